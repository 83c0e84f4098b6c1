"""Android integration: the module manifest, the Android build files made
from it, the vendor_boot ramdisk and vendor_dlkm images, and flashing."""
