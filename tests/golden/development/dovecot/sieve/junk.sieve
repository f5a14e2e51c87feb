# Rendered by Letterhead: runs before each mailbox's own filters (sieve_before). Mail the spam
# filter scored at least the mailbox's junk score goes to Junk, and nothing else runs for it
# (no vacation reply or forward of spam). rspamd's header holds the score in hundredths, never
# negative, and rspamd removes one a sender wrote; the mailbox's junk score comes from its
# userdb row (its domain's, or the default), so a change applies to the next delivery.
require ["fileinto", "mailbox", "variables", "environment", "vnd.dovecot.environment", "relational", "comparator-i;ascii-numeric"];

if environment :matches "vnd.dovecot.config.junk_score" "*" {
  set "junk_score" "${1}";
}
if string :is "${junk_score}" "" {
  set "junk_score" "600";
}
if header :value "ge" :comparator "i;ascii-numeric" "X-Letterhead-Spam-Score" "${junk_score}" {
  fileinto :create "Junk";
  stop;
}
