//! Helpers shared by the fuzz targets in `src/bin/` (one file per target;
//! see ../README.md).
