//! The controller's decisions (filled in by the election and placement work).
