//! The one sanitiser every string from a server or a message passes before it is shown.
