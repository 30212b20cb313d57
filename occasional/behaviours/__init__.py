"""OTP-style behaviours: Server (gen_server) and Supervisor (API.md section 6)."""
