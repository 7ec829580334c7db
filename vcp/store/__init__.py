"""The on-disk contract: names, the .pt writer and reader, the HDF5 writer, atomic writes, locks, checks of what is read back."""
