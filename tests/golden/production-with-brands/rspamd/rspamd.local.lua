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
-- same lists at delivery): looked up in each recipient's Redis set at once.
local ALLOWED_SENDERS_PREFIX = "letterhead:allow:"
local ALLOWED_SCRIPT = [[
for _, key in ipairs(KEYS) do
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

-- What an allow list may name for this message: the envelope sender unless SPF fails for it,
-- the From: address unless DMARC fails for it, and each one's @domain.
local function allow_candidates(task)
  local candidates = {}
  local function add(address)
    if address and address.addr and address.addr ~= "" then
      table.insert(candidates, string.lower(address.addr))
    end
    if address and address.domain and address.domain ~= "" then
      table.insert(candidates, "@" .. string.lower(address.domain))
    end
  end
  if not task:has_symbol("R_SPF_FAIL") then
    add((task:get_from("smtp") or {})[1])
  end
  if not (task:has_symbol("DMARC_POLICY_REJECT") or task:has_symbol("DMARC_POLICY_QUARANTINE")) then
    add((task:get_from("mime") or {})[1])
  end
  return candidates
end

-- Refused as spam, unless every recipient allows the sender: then it is delivered to their inboxes.
local function refuse_unless_allowed(task)
  local function refuse()
    task:set_pre_result("reject", "Message refused as spam", "letterhead")
  end
  local keys = {}
  for _, recipient in ipairs(task:get_recipients("smtp") or {}) do
    if recipient.addr and recipient.addr ~= "" then
      table.insert(keys, ALLOWED_SENDERS_PREFIX .. string.lower(recipient.addr))
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
  local alterations = { remove = { [SCORE_HEADER] = 0 }, add = {} }
  if not task:get_user() then
    alterations.add[SCORE_HEADER] = { order = 0, value = score_header_value(score) }
  end
  lua_mime.modify_headers(task, alterations)
end

local policy_id = rspamd_config:register_symbol({
  name = "LETTERHEAD_POLICY",
  type = "postfilter",
  priority = 5,
  callback = function(task)
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
