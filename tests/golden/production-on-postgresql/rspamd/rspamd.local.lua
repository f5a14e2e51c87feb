-- Rendered by Letterhead: its spam policy on top of rspamd's scores.
--
-- rspamd scores a message once, but thresholds belong to the recipients' domains: the message
-- is refused only when its score reaches the most lenient recipient's reject score (Letterhead
-- publishes each domain's score that differs from the default into Redis,
-- controlplane/daemons/spam_policy.py). Junk filing is per mailbox, at delivery: Dovecot's Sieve
-- compares the score header added here with the mailbox's junk score.
--
-- Greylisting, for messages naming a domain that has it on: a (client network, sender,
-- recipients) seen for the first time is deferred (4xx); its retry after GREYLIST_DELAY passes,
-- and so does that triplet's mail for GREYLIST_PASS_SECONDS after.
local lua_mime = require "lua_mime"
local rspamd_cryptobox_hash = require "rspamd_cryptobox_hash"
local lua_redis = require "lua_redis"
local rspamd_logger = require "rspamd_logger"
local rspamd_util = require "rspamd_util"

local DEFAULT_REJECT_SCORE = 15
local REJECT_SCORES_KEY = "letterhead:reject-score"
local SCORE_HEADER = "X-Letterhead-Spam-Score"
local GREYLIST_DOMAINS_KEY = "letterhead:greylist-domains"
local GREYLIST_PREFIX = "letterhead:grey:"
local GREYLIST_DELAY = 300
local GREYLIST_PASS_SECONDS = 36 * 24 * 3600
-- A triplet first seen is remembered this long: a sender retrying later starts again.
local GREYLIST_WAIT_SECONDS = 24 * 3600

local redis_params = lua_redis.parse_redis_server("letterhead")

-- Mail on Postfix's internal listener (its milter_macro_daemon_name is INTERNAL_MTA_TAG): forwards and Sieve
-- redirects, already scanned on their way in, and what Dovecot writes itself. None of it is
-- scanned again; only what Dovecot wrote is DKIM-signed, as its own From (the mailbox) asks.
local INTERNAL_MTA_TAG = "letterhead-internal"
local OWN_MAIL_USER = "letterhead-internal"

local function from_internal_listener(task)
  -- rspamd's milter hands Postfix's {daemon_name} on as MTA-Name.
  local name = task:get_request_header("MTA-Name")
  return name ~= nil and tostring(name) == INTERNAL_MTA_TAG
end

-- Dovecot's vacation replies: marked as automatic replies (RFC 3834), sent with the mailbox as
-- envelope sender (sieve_vacation_send_from_recipient), and signed only when their From is that
-- same address: a script's `vacation :from` naming someone else leaves unsigned. A Sieve
-- redirect always carries X-Sieve-Redirected-From, which Dovecot adds itself (and Sieve scripts
-- may not); Sieve rejects go with the empty sender and are not signed.
local function written_by_dovecot(task)
  local sender = (task:get_from("smtp") or {})[1]
  local from = (task:get_from("mime") or {})
  if not (sender and sender.addr and sender.addr ~= "") or #from ~= 1 or not from[1].addr then
    return false
  end
  if string.lower(from[1].addr) ~= string.lower(sender.addr) then
    return false
  end
  if task:get_header("X-Sieve-Redirected-From") then
    return false
  end
  local auto_submitted = task:get_header("Auto-Submitted")
  return auto_submitted ~= nil and string.find(string.lower(auto_submitted), "^%s*auto%-replied") ~= nil
end

rspamd_config:register_symbol({
  name = "LETTERHEAD_INTERNAL",
  type = "prefilter",
  priority = 10,
  callback = function(task)
    if not from_internal_listener(task) then
      return
    end
    -- Only the DKIM signer runs, and it signs a logged-in user's mail (dkim_signing.conf).
    if written_by_dovecot(task) then
      task:set_user(OWN_MAIL_USER)
    end
    task:set_settings({ symbols_enabled = { "DKIM_SIGNED" } })
  end,
})

local function recipient_domains(task)
  local domains, seen = {}, {}
  for _, recipient in ipairs(task:get_recipients("smtp") or {}) do
    local domain = recipient.domain and string.lower(recipient.domain)
    if domain and domain ~= "" and not seen[domain] then
      seen[domain] = true
      table.insert(domains, domain)
    end
  end
  return domains
end

-- The score as a whole number of hundredths, never below zero: Sieve compares numbers as
-- unsigned integers (i;ascii-numeric).
local function score_header_value(score)
  if score ~= score or score < 0 then
    return "0"
  end
  return string.format("%d", math.floor(score * 100 + 0.5))
end

-- The client's network (/24, /64: a sender's retry may come from another address of its pool),
-- the envelope sender and the greylisted recipients, hashed into one Redis key.
local function greylist_key(task, greylisted)
  local ip = task:get_from_ip()
  local network = "unknown"
  if ip and ip:is_valid() then
    network = tostring(ip:apply_mask(ip:get_version() == 4 and 24 or 64))
  end
  local from = task:get_from("smtp")
  local sender = (from and from[1] and from[1].addr or ""):lower()
  table.sort(greylisted)
  local digest = rspamd_cryptobox_hash.create(network .. "\0" .. sender .. "\0" .. table.concat(greylisted, ","))
  return GREYLIST_PREFIX .. digest:hex()
end

local function greylist(task, domains)
  local function with_flags(err, flags)
    if err or type(flags) ~= "table" then
      if err then
        rspamd_logger.warnx(task, "letterhead: greylisting unavailable (%s): not greylisted", err)
      end
      return
    end
    local greylisted_domains = {}
    for index, domain in ipairs(domains) do
      if tonumber(flags[index]) == 1 then
        greylisted_domains[domain] = true
      end
    end
    local greylisted = {}
    for _, recipient in ipairs(task:get_recipients("smtp") or {}) do
      local domain = recipient.domain and string.lower(recipient.domain)
      if domain and greylisted_domains[domain] then
        table.insert(greylisted, string.lower(recipient.addr))
      end
    end
    if #greylisted == 0 then
      return
    end
    local key = greylist_key(task, greylisted)
    local now = math.floor(rspamd_util.get_time())
    local function with_first_seen(get_err, first_seen)
      if get_err then
        rspamd_logger.warnx(task, "letterhead: greylisting unavailable (%s): not greylisted", get_err)
        return
      end
      local seen = tonumber(first_seen)
      if seen == nil then
        lua_redis.redis_make_request(task, redis_params, key, true, function() end,
          "SET", { key, tostring(now), "EX", tostring(GREYLIST_WAIT_SECONDS) })
        task:set_pre_result("soft reject", "Greylisted: please try again later", "letterhead")
      elseif now - seen < GREYLIST_DELAY then
        task:set_pre_result("soft reject", "Greylisted: please try again later", "letterhead")
      else
        -- Passed: this triplet's mail is accepted at once from now on.
        lua_redis.redis_make_request(task, redis_params, key, true, function() end,
          "EXPIRE", { key, tostring(GREYLIST_PASS_SECONDS) })
      end
    end
    lua_redis.redis_make_request(task, redis_params, key, false, with_first_seen, "GET", { key })
  end
  lua_redis.redis_make_request(task, redis_params, GREYLIST_DOMAINS_KEY, false, with_flags,
    "SMISMEMBER", { GREYLIST_DOMAINS_KEY, table.unpack(domains) })
end

-- Whether every recipient allows this sender (one mailbox's list must not let spam through to
-- other recipients, perhaps another tenant's) (templates/dovecot/sieve/junk.sieve.j2 applies the
-- same lists at delivery). Letterhead publishes a set per address that receives mail: a mailbox's
-- own list, an alias's the senders all its destinations allow, a catch-all's under "@domain"
-- (controlplane/services/sender_lists.py). As Postfix finds a recipient, its key is the first
-- that exists of its address, its address without the +extension, and its domain's catch-all;
-- so an address that must not fall through to the next has a set of its own (perhaps holding
-- only "", which no sender matches). All recipients are looked up in one script call.
local ALLOWED_SENDERS_PREFIX = "letterhead:allow:"
local VERIFIED_ENVELOPE_HEADER = "X-Letterhead-Verified-Envelope"
local VERIFIED_FROM_HEADER = "X-Letterhead-Verified-From"
local ALLOWED_SCRIPT = [[
for index = 1, #KEYS, 3 do
  local key = KEYS[index]
  if redis.call('EXISTS', key) == 0 then
    key = KEYS[index + 1]
    if redis.call('EXISTS', key) == 0 then
      key = KEYS[index + 2]
    end
  end
  local allowed = false
  for _, sender in ipairs(ARGV) do
    if redis.call('SISMEMBER', key, sender) == 1 then
      allowed = true
      break
    end
  end
  if not allowed then
    return 0
  end
end
return 1
]]

local function has_option(task, symbol, wanted)
  local found = task:get_symbol(symbol)
  for _, result in ipairs(found or {}) do
    for _, option in ipairs(result.options or {}) do
      if option == wanted then
        return true
      end
    end
  end
  return false
end

-- The senders this message proves, which alone an allow list may name (anyone can write any
-- address): the envelope sender when SPF passes for it, the From: address when DMARC passes for
-- it, or, for a domain without a DMARC policy, when a valid DKIM signature is the From domain's
-- own. Decided here once and handed to the Sieve rule in headers (removed from what a client
-- sent), so rspamd and delivery trust the same senders.
local function verified_senders(task)
  local envelope, from = nil, nil
  local envelope_sender = (task:get_from("smtp") or {})[1]
  if envelope_sender and envelope_sender.addr and envelope_sender.addr ~= "" and task:has_symbol("R_SPF_ALLOW") then
    envelope = string.lower(envelope_sender.addr)
  end
  local from_addresses = task:get_from("mime") or {}
  local from_address = from_addresses[1]
  if #from_addresses == 1 and from_address.addr and from_address.addr ~= "" and from_address.domain then
    local domain = string.lower(from_address.domain)
    if task:has_symbol("DMARC_POLICY_ALLOW")
      or (task:has_symbol("DMARC_NA") and has_option(task, "DKIM_TRACE", domain .. ":+")) then
      from = string.lower(from_address.addr)
    end
  end
  return envelope, from
end

local function allow_candidates(task)
  local candidates = {}
  local envelope, from = verified_senders(task)
  for _, address in ipairs({ envelope, from }) do
    if address then
      table.insert(candidates, address)
      table.insert(candidates, "@" .. string.match(address, "@([^@]*)$"))
    end
  end
  return candidates
end

local function allow_keys(recipient)
  local user = string.lower(recipient.user or "")
  local domain = string.lower(recipient.domain or "")
  local base = string.match(user, "^([^+]*)") or user
  return ALLOWED_SENDERS_PREFIX .. user .. "@" .. domain,
    ALLOWED_SENDERS_PREFIX .. base .. "@" .. domain,
    ALLOWED_SENDERS_PREFIX .. "@" .. domain
end

-- Refused as spam, unless every recipient allows the sender: then it is delivered to their inboxes.
local function refuse_unless_allowed(task)
  local function refuse()
    task:set_pre_result("reject", "Message refused as spam", "letterhead")
  end
  local keys = {}
  for _, recipient in ipairs(task:get_recipients("smtp") or {}) do
    if recipient.domain and recipient.domain ~= "" then
      local address, base, catch_all = allow_keys(recipient)
      table.insert(keys, address)
      table.insert(keys, base)
      table.insert(keys, catch_all)
    end
  end
  local candidates = allow_candidates(task)
  if #keys == 0 or #candidates == 0 or not redis_params then
    return refuse()
  end
  local function with_answer(err, allowed)
    if err then
      rspamd_logger.warnx(task, "letterhead: allow lists unavailable (%s): refused", err)
      return refuse()
    end
    if tonumber(allowed) == 1 then
      task:insert_result("LETTERHEAD_ALLOWED_SENDER", 1.0)
    else
      refuse()
    end
  end
  local arguments = { ALLOWED_SCRIPT, tostring(#keys) }
  for _, key in ipairs(keys) do
    table.insert(arguments, key)
  end
  for _, candidate in ipairs(candidates) do
    table.insert(arguments, candidate)
  end
  local sent = lua_redis.redis_make_request(task, redis_params, keys[1], false, with_answer, "EVAL", arguments)
  if not sent then
    refuse()
  end
end

local function decide(task, reject_scores, domains)
  local score = task:get_metric_score("default")[1]
  local lenient = nil
  for _, threshold in ipairs(reject_scores) do
    if lenient == nil or threshold > lenient then
      lenient = threshold
    end
  end
  lenient = lenient or DEFAULT_REJECT_SCORE
  if score >= lenient and not task:has_pre_result() then
    refuse_unless_allowed(task)
  elseif domains and #domains > 0 and not task:get_user() and not task:has_pre_result() and redis_params then
    greylist(task, domains)
  end
  -- A client's own score header is always removed; mail from outside gets ours, which files
  -- it per mailbox at delivery.
  local alterations = {
    remove = { [SCORE_HEADER] = 0, [VERIFIED_ENVELOPE_HEADER] = 0, [VERIFIED_FROM_HEADER] = 0 },
    add = {},
  }
  if not task:get_user() then
    alterations.add[SCORE_HEADER] = { order = 0, value = score_header_value(score) }
    local envelope, from = verified_senders(task)
    if envelope then
      alterations.add[VERIFIED_ENVELOPE_HEADER] = { order = 0, value = envelope }
    end
    if from then
      alterations.add[VERIFIED_FROM_HEADER] = { order = 0, value = from }
    end
  end
  lua_mime.modify_headers(task, alterations)
end

local policy_id = rspamd_config:register_symbol({
  name = "LETTERHEAD_POLICY",
  type = "postfilter",
  priority = 5,
  callback = function(task)
    if from_internal_listener(task) then
      return
    end
    local domains = recipient_domains(task)
    local function with_thresholds(err, data)
      local thresholds = {}
      for index, _ in ipairs(domains) do
        local value = (not err and type(data) == "table") and tonumber(data[index]) or nil
        table.insert(thresholds, value or DEFAULT_REJECT_SCORE)
      end
      if err then
        rspamd_logger.warnx(task, "letterhead: reject scores unavailable (%s), using the default", err)
      end
      decide(task, thresholds, domains)
    end
    if #domains == 0 or not redis_params then
      return with_thresholds(nil, {})
    end
    local sent = lua_redis.redis_make_request(task, redis_params, REJECT_SCORES_KEY, false,
      with_thresholds, "HMGET", { REJECT_SCORES_KEY, table.unpack(domains) })
    if not sent then
      with_thresholds("not sent", {})
    end
  end,
})

-- Shown in the verdict: a message over the reject score let through by a recipient's allow list.
rspamd_config:register_symbol({
  name = "LETTERHEAD_ALLOWED_SENDER",
  type = "virtual",
  parent = policy_id,
  score = 0.0,
})
