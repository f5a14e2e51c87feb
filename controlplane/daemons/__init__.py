"""Private Postfix and Dovecot instances: start, stop, check, reload. apply.py swaps generations."""
