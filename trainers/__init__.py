"""trainers: see README."""
