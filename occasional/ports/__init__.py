"""Native executables as processes of the runtime (API.md section 8)."""
