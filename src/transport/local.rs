//! The local transport: the same steps, run with `sh -c` on this machine.
