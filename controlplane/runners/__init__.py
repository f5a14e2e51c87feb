"""Long-running processes that tie services to adapters: the stack (`letterhead up`), the
periodic runner and the log follower. Like the CLI, they are entry points: they may use
services and adapters alike, and nothing below them imports them."""
