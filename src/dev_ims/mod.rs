//! The development IMS (filled in by its own change).
