#!/bin/sh
# Rendered by Letterhead. Dovecot's quota-warning service runs this as vmail with the
# level crossed (80 or 95) and the mailbox's address. The warning goes straight into
# that mailbox's INBOX through dovecot-lda: never through Postfix, never off the machine.
set -eu
percent="$1"
user="$2"
case "$percent" in
  80) advice="There is still room, but please delete old or large messages soon (empty the Trash too)." ;;
  95) advice="Please delete old or large messages now (and empty the Trash), or ask your administrator for more storage." ;;
  *) echo "quota-warning: unexpected level $percent" >&2; exit 64 ;;
esac
case "$user" in
  *@*) ;;
  *) echo "quota-warning: unexpected user $user" >&2; exit 64 ;;
esac

# The warning is stored even in a full mailbox (noenforcing) and counts towards its
# usage, but warns no one again: rules at 0% never fire. This runs as the storage
# account, which may not open Dovecot's log: errors go to stderr, which Dovecot logs
# (as errors, so the routine "saved mail" line is dropped); stats are the daemons' own.
/usr/lib/dovecot/dovecot-lda -c /srv/letterhead/config/live/dovecot/dovecot.conf -d "$user" \
  -f "postmaster@mail.platform.example" \
  -o "plugin/quota=count:User quota:noenforcing" \
  -o "plugin/quota_warning=storage=0%% quota-warning 0 %u" \
  -o "plugin/quota_warning2=storage=0%% quota-warning 0 %u" \
  -o log_path=/dev/stderr -o info_log_path=/dev/null -o stats_writer_socket_path= <<MESSAGE
From: Mail storage <postmaster@mail.platform.example>
To: <$user>
Subject: Your mailbox is $percent% full
Date: $(LC_ALL=C date -R)
Message-ID: <quota-warning-$percent-$(date +%s)-$$@mail.platform.example>
Auto-Submitted: auto-generated
MIME-Version: 1.0
Content-Type: text/plain; charset=us-ascii

Hello,

Your mailbox $user is now more than $percent% full.

$advice

Once it is full, new messages to you are turned away and their senders are told so.

This message was sent automatically by your mail server; there is no need to reply.
MESSAGE
