//! TLS connector setup shared by IMAP and POP3: verified by default, extra CA or pinned cert.
