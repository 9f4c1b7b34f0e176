"""Files the operators install verbatim into harness versions (stdlib-only code that runs in the sandbox)."""
