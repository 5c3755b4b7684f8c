#!/usr/bin/env bash
# Section 2 of reencrypt_datashift.sh (encryption with a data shift, offline: kill -9 at a random
# sync of each tool's run, finished by the other), a CTest test of its own so that both stay
# short; reencrypt_datashift.sh says what it checks.
SECTIONS=2 exec bash "$(dirname "$0")/reencrypt_datashift.sh"
