//! Metadata records and the image every broker applies them to.
