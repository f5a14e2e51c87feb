-- Rendered by Letterhead: its spam policy on top of rspamd's scores.
--
-- rspamd scores a message once, but thresholds belong to the recipients' domains: the message
-- is refused only when its score reaches the most lenient recipient's reject score (Letterhead
-- publishes each domain's score that differs from the default into Redis,
-- controlplane/daemons/spam_policy.py). Junk filing is per mailbox, at delivery: Dovecot's Sieve
-- compares the score header added here with the mailbox's junk score.
local lua_mime = require "lua_mime"
local lua_redis = require "lua_redis"
local rspamd_logger = require "rspamd_logger"

local DEFAULT_REJECT_SCORE = 15
local REJECT_SCORES_KEY = "letterhead:reject-score"
local SCORE_HEADER = "X-Letterhead-Spam-Score"

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

local function decide(task, reject_scores)
  local score = task:get_metric_score("default")[1]
  local lenient = nil
  for _, threshold in ipairs(reject_scores) do
    if lenient == nil or threshold > lenient then
      lenient = threshold
    end
  end
  lenient = lenient or DEFAULT_REJECT_SCORE
  if score >= lenient and not task:has_pre_result() then
    task:set_pre_result("reject", "Message refused as spam", "letterhead")
  end
  -- A client's own score header is always removed; mail from outside gets ours, which files
  -- it per mailbox at delivery.
  local alterations = { remove = { [SCORE_HEADER] = 0 }, add = {} }
  if not task:get_user() then
    alterations.add[SCORE_HEADER] = { order = 0, value = score_header_value(score) }
  end
  lua_mime.modify_headers(task, alterations)
end

rspamd_config:register_symbol({
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
      decide(task, thresholds)
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
