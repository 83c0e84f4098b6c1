"""Host tooling for GCMA: build the GKI-equivalent kernel, vendor modules,
device tree and root filesystem, drive an emulated or real target, test."""

__version__ = "0.1.0"
