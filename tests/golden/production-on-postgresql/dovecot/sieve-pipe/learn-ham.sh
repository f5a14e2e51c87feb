#!/bin/sh
# Rendered by Letterhead. Dovecot's IMAPSieve runs this as the storage account with the message
# on stdin when a user moves one out of Junk: rspamd's controller (loopback) learns it as
# ham for the whole installation. A failure is logged by Dovecot and never blocks the move.
exec /usr/bin/rspamc -h 127.0.0.1:11434 -t 10 learn_ham
