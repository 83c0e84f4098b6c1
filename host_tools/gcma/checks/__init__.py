"""What judges a kernel or a target: KUnit, page-cache integrity, stress,
benchmarks, and the GKI checks (KMI symbols, Kconfig)."""
