//! Dockerfile frontend: parsing, variable expansion and `.dockerignore` matching.
