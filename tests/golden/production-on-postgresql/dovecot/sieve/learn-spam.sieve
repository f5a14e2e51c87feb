# Rendered by Letterhead: a user moved a message into Junk (IMAPSieve): rspamd learns it as spam.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :matches "imap.user" "*" {
  set "user" "${1}";
}
pipe :copy "learn-spam.sh" ["${user}"];
