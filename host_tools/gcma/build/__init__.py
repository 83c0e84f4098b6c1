"""Build stages: kernel, modules, device tree, root filesystem, here or on a
build machine."""
