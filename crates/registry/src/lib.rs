//! berth-registry: the OCI distribution / Docker Registry v2 client (in progress).
