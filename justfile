# Convenience recipes; each is a plain cargo command (see README).

# Run the whole scenario suite against an embedded server.
run:
    cargo run --release

# Run every test.
test:
    cargo test --workspace

# Formatting and lints as CI checks them.
check:
    cargo fmt --all -- --check
    cargo clippy --workspace --all-targets -- -D warnings

# What CI runs.
ci:
    bash .ci/run

# Start a standalone server with a data dir in .winmdm/.
server secret="change-me":
    cargo run --release -p winmdm-server -- --enroll-secret {{secret}} --admin-token admin

# The benchmark figures of docs/performance.md.
bench:
    cargo run --release -p winmdm-load -- bench --json
