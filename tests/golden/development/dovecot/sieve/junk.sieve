# Rendered by Letterhead: runs before each mailbox's own filters (sieve_before).
#
# 1. The mailbox's allow and block lists (from its userdb row, services/sender_lists.py): a
#    sender is matched by the envelope sender and by the From address, an address before its
#    domain. Allowed: never filed as junk. Blocked: filed into Junk, and nothing else runs.
#    A block applies to the sender a message claims; an allow only to one it proves, which
#    rspamd decided (the envelope sender by SPF, the From by DMARC) and wrote in headers it
#    removes from what a client sent: anyone can claim an allowed sender.
# 2. Otherwise mail the spam filter scored at least the mailbox's junk score goes to Junk, and
#    nothing else runs for it (no vacation reply or forward of spam). rspamd's header holds the
#    score in hundredths, never negative, and rspamd removes one a sender wrote; the junk score
#    comes from the userdb row too (its domain's, or the default).
# Both come from SQL at each delivery, so a change applies to the next message.
#
# 0. First, a message this mailbox already stored is not stored again: Postfix delivers a
#    message again when its LMTP session was cut after Dovecot saved it but before the reply
#    reached Postfix (a Dovecot reload or restart). The queue ID in Postfix's own Received
#    header (the topmost) names that message; its copies within a day are dropped.
require ["fileinto", "mailbox", "variables", "envelope", "environment", "vnd.dovecot.environment", "relational", "comparator-i;ascii-numeric", "duplicate", "regex"];

if header :regex "received" "\\(Postfix\\) with [A-Z]+ id ([0-9A-Za-z]+)" {
  if duplicate :uniqueid "${1}" :seconds 86400 {
    discard;
    stop;
  }
}

set "allowed" "";
set "blocked" "";
if environment :matches "vnd.dovecot.config.allowed_senders" "*" {
  set :lower "allowed" "${1}";
}
if environment :matches "vnd.dovecot.config.blocked_senders" "*" {
  set :lower "blocked" "${1}";
}
set "envelope_sender" "";
set "envelope_domain" "";
set "from_address" "";
set "from_domain" "";
if envelope :all :matches "from" "*@*" {
  set :lower "envelope_sender" "${0}";
  set :lower "envelope_domain" "${2}";
}
if address :all :matches "from" "*@*" {
  set :lower "from_address" "${0}";
  set :lower "from_domain" "${2}";
}
set "proven_sender" "";
set "proven_sender_domain" "";
set "proven_from" "";
set "proven_from_domain" "";
if header :matches "X-Letterhead-Verified-Envelope" "*@*" {
  set :lower "proven_sender" "${0}";
  set :lower "proven_sender_domain" "${2}";
}
if header :matches "X-Letterhead-Verified-From" "*@*" {
  set :lower "proven_from" "${0}";
  set :lower "proven_from_domain" "${2}";
}
# The lists hold no empty entry, so an empty sender (a bounce, nothing proven) matches nothing.
set "listed" "";
if anyof (string :contains "${blocked}" ",${envelope_sender},", string :contains "${blocked}" ",${from_address},") {
  set "listed" "block";
} elsif anyof (string :contains "${allowed}" ",${proven_sender},", string :contains "${allowed}" ",${proven_from},") {
  set "listed" "allow";
} elsif anyof (string :contains "${blocked}" ",@${envelope_domain},", string :contains "${blocked}" ",@${from_domain},") {
  set "listed" "block";
} elsif anyof (string :contains "${allowed}" ",@${proven_sender_domain},", string :contains "${allowed}" ",@${proven_from_domain},") {
  set "listed" "allow";
}
if string :is "${listed}" "block" {
  fileinto :create "Junk";
  stop;
}

if environment :matches "vnd.dovecot.config.junk_score" "*" {
  set "junk_score" "${1}";
}
if string :is "${junk_score}" "" {
  set "junk_score" "600";
}
if not string :is "${listed}" "allow" {
  if header :value "ge" :comparator "i;ascii-numeric" "X-Letterhead-Spam-Score" "${junk_score}" {
    fileinto :create "Junk";
    stop;
  }
}
