# Rendered by Letterhead: a user moved a message out of Junk (IMAPSieve): rspamd learns it as ham,
# unless it went to the Trash (deleting spam says nothing about it).
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];

if environment :matches "imap.mailbox" "*" {
  set "mailbox" "${1}";
}
if string "${mailbox}" "Trash" {
  stop;
}
if environment :matches "imap.user" "*" {
  set "user" "${1}";
}
pipe :copy "learn-ham.sh" ["${user}"];
