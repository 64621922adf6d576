-- ccd routing in Redis: agents' records and indexes, waiting calls, and the matching of the
-- two (a new call looks for a free agent; a freed agent looks for the best waiting call).
-- Loaded after the store's LUA_PRELUDE (pack_map, load_record). See ccd/store/routing.py.
--
-- One script call runs a list of operations in order, atomically (no other client runs in
-- between), and answers one result per operation:
--   ARGV[1] key prefix, ARGV[2] agent schema version, ARGV[3] now (epoch seconds),
--   ARGV[4] this node's id, ARGV[5] msgpack list of operations {name, args...}.
-- The answer is a msgpack list of results.
--
-- Keys (prefix P):
--   agent:<id>             msgpack agent record (ccd.store.agent); rev bumped by every write
--   agents                 SET of agent ids;  agents:ext  HASH extension -> id
--   agents:tag:<t>         SET of agents carrying tag t
--   agents:ready           SET of agents logged in (ready) with a registered phone
--   agents:free[:<t>]      ZSET of agents free now or once their wrap-up ends, scored
--                          ntags * 1e10 + the time they became (become) idle: routing order
--                          (fewest tags, longest idle). A search takes scores up to now only,
--                          bucket by bucket, so agents still in wrap-up are never visited.
--   agents:freeset:<S>     ZSET as agents:free, of the agents whose tags are exactly the set S
--                          (sorted, joined by "+"; agents with two tags or more only): a call
--                          asking for several tags merges the heads of the sets holding them
--   agents:tagset:<S>      SET of the agents whose tags are exactly S, free or not
--   agents:tagsets:<t>     SET of the tag sets S (of at least one agent) holding tag t
--   agents:tagsets         "1" once the three above index every agent (a centre whose agents
--                          were written by an older ccd is indexed by the first search)
--   wait:<queue>:<tagset>  ZSET of calls waiting for an agent (no agent reserved), scored by
--                          the queue order key (priority, then arrival); tagset = the call's
--                          required tags joined by "+" ("_" for none)
--   wait:lists             HASH list name ("<queue>:<tagset>") -> number of calls in it
--   wait:of                HASH call -> its list name
--   queue:<queue>          ZSET of the queue's calls from entry until bridged or finished
--   tried:<call>           SET of agents the call was offered to in this pass (not offered
--                          again): added at reservation, taken back for an offer that
--                          ended through no fault of the agent
--   offer:<call>           msgpack {agent, leg, job, at}: the agent reserved for the call
--   calls                  SET of live calls;  call:<uuid>  the call record (Python's msgpack)
--   lease:call.<uuid>      the node hunting the call; valid while node:<owner> exists
--   node:<id>              a live daemon's heartbeat (expires when it stops beating)
--   notify:<node>          pub/sub channel: a freed agent was reserved for one of its calls

local P, V, NOW, ME = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local NULLABLE = {"call", "offer_leg", "wrapup_until"}
local BUCKET = 1e10
local MAP_TTL = 21600000  -- 6 h: per-call helper keys outlive any call

-- Agents --------------------------------------------------------------------------------------

local function empty(t) return t == nil or next(t) == nil end

-- Logged in, registered, no queue offer and nothing else on the phone: in the free index.
local function listed(rec)
  return rec.login == "ready" and rec.registered == true and not rec.call
    and empty(rec.personal) and (rec.activity == "idle" or rec.activity == "wrapup")
end

local function is_free(rec, now)
  if not listed(rec) then return false end
  return rec.activity == "idle" or tonumber(rec.wrapup_until or 0) <= now
end

local function free_score(rec)
  local since = rec.idle_since
  if rec.activity == "wrapup" then since = rec.wrapup_until end
  return #(rec.tags or {}) * BUCKET + (tonumber(since) or 0)
end

-- An agent's tag set as the name of its keys; nil under two tags (no call that asks for two
-- tags or more could take the agent).
local function tagset_of(tags)
  if not tags or #tags < 2 then return nil end
  local sorted = {}
  for i, t in ipairs(tags) do sorted[i] = t end
  table.sort(sorted)
  return table.concat(sorted, "+")
end

local function tagset_size(set)
  local _, plus = string.gsub(set, "%+", "")
  return plus + 1
end

-- Moves an agent from tag set `old_set` to `new_set` (either nil) and files it free or not.
local function index_tagset(id, old_set, new_set, on, score)
  if old_set and old_set ~= new_set then
    redis.call("ZREM", P .. "agents:freeset:" .. old_set, id)
    local members = P .. "agents:tagset:" .. old_set
    redis.call("SREM", members, id)
    if redis.call("SCARD", members) == 0 then
      for t in string.gmatch(old_set, "[^+]+") do
        redis.call("SREM", P .. "agents:tagsets:" .. t, old_set)
      end
    end
  end
  if not new_set then return end
  -- Already a member when its set did not change (a record without it is one an older ccd
  -- wrote: the index built for those, index_tagsets_of, passes nil).
  if old_set ~= new_set and redis.call("SADD", P .. "agents:tagset:" .. new_set, id) == 1 then
    for t in string.gmatch(new_set, "[^+]+") do
      redis.call("SADD", P .. "agents:tagsets:" .. t, new_set)
    end
  end
  if on then redis.call("ZADD", P .. "agents:freeset:" .. new_set, score, id)
  else redis.call("ZREM", P .. "agents:freeset:" .. new_set, id) end
end

local function index(id, old, new)
  local free = P .. "agents:free"
  local ready = new.login == "ready" and new.registered == true
  local on, score = listed(new), free_score(new)
  local keep = {}
  for _, t in ipairs(new.tags or {}) do keep[t] = true end
  if old then
    for _, t in ipairs(old.tags or {}) do
      if not keep[t] then
        redis.call("SREM", P .. "agents:tag:" .. t, id)
        redis.call("ZREM", free .. ":" .. t, id)
      end
    end
  end
  if ready then redis.call("SADD", P .. "agents:ready", id)
  else redis.call("SREM", P .. "agents:ready", id) end
  if on then redis.call("ZADD", free, score, id) else redis.call("ZREM", free, id) end
  for t, _ in pairs(keep) do
    redis.call("SADD", P .. "agents:tag:" .. t, id)
    if on then redis.call("ZADD", free .. ":" .. t, score, id)
    else redis.call("ZREM", free .. ":" .. t, id) end
  end
  index_tagset(id, old and tagset_of(old.tags), tagset_of(new.tags), on, score)
end

local function unindex(id, rec)
  redis.call("SREM", P .. "agents", id)
  redis.call("SREM", P .. "agents:ready", id)
  redis.call("ZREM", P .. "agents:free", id)
  for _, t in ipairs(rec.tags or {}) do
    redis.call("SREM", P .. "agents:tag:" .. t, id)
    redis.call("ZREM", P .. "agents:free:" .. t, id)
  end
  index_tagset(id, tagset_of(rec.tags), nil, false, 0)
end

local function load_agent(id)
  return load_record(P .. "agent:" .. id, V)
end

local function store_agent(id, rec)
  rec["_v"] = V
  local raw = pack_map(rec, NULLABLE)
  redis.call("SET", P .. "agent:" .. id, raw)
  return raw
end

-- Compare-and-set of a whole record written by Python (ccd.core.presence decided it).
-- 1 written, 0 the revision moved on (or the agent exists, for a create), -2 foreign schema,
-- -3 the extension belongs to another agent.
local function op_write(id, expected, raw)
  local old, code = load_agent(id)
  if code == -2 then return -2 end
  expected = tonumber(expected)
  if expected < 0 then
    if old then return 0 end
  elseif not old or tonumber(old.rev) ~= expected then
    return 0
  end
  local new = cmsgpack.unpack(raw)
  local owner = redis.call("HGET", P .. "agents:ext", new.ext)
  if owner and owner ~= id then return -3 end
  new.rev = expected < 0 and 1 or expected + 1
  store_agent(id, new)
  redis.call("SADD", P .. "agents", id)
  redis.call("HSET", P .. "agents:ext", new.ext, id)
  if old and old.ext ~= new.ext and redis.call("HGET", P .. "agents:ext", old.ext) == id then
    redis.call("HDEL", P .. "agents:ext", old.ext)
  end
  index(id, old, new)
  return 1
end

local function op_delete(id)
  local rec, code = load_agent(id)
  if not rec then return code end
  redis.call("DEL", P .. "agent:" .. id)
  unindex(id, rec)
  if redis.call("HGET", P .. "agents:ext", rec.ext) == id then
    redis.call("HDEL", P .. "agents:ext", rec.ext)
  end
  return 1
end

-- Reserve a free agent for `call` (a queue call or a callback request): its new record.
local function reserve(id, rec, call, leg, job)
  if rec.activity == "wrapup" then  -- the wrap-up ended by itself: idle since its end
    rec.idle_since = rec.wrapup_until
  end
  rec.wrapup_until = nil
  rec.activity = "ringing"
  rec.call = call
  if leg ~= "" then rec.offer_leg = leg end
  rec.since = NOW
  rec.rev = (tonumber(rec.rev) or 0) + 1
  store_agent(id, rec)
  index(id, rec, rec)
  redis.call("SET", P .. "offer:" .. call,
    cmsgpack.pack({agent = id, leg = leg, job = job, at = NOW}), "PX", MAP_TTL)
  -- Offered once in this pass, whatever comes of it (a daemon that dies mid-ring leaves the
  -- next one knowing); an offer released without blame takes it back ("untry").
  redis.call("SADD", P .. "tried:" .. call, id)
  redis.call("PEXPIRE", P .. "tried:" .. call, MAP_TTL)
  return rec
end

-- A given agent for `call`, if free (or already reserved for it: a retried request).
local function op_reserve(id, call, leg, job)
  local rec = load_agent(id)
  if not rec then return false end
  if rec.call == call and rec.activity == "ringing" then return rec end
  if not is_free(rec, NOW) then return false end
  return reserve(id, rec, call, leg, job)
end

local function has_tags(id, tags)
  for _, t in ipairs(tags) do
    if redis.call("SISMEMBER", P .. "agents:tag:" .. t, id) == 0 then return false end
  end
  return true
end

local function skip_set(skip)
  local skipped = {}
  if skip then
    for _, id in ipairs(redis.call("SMEMBERS", skip)) do skipped[id] = true end
  end
  return skipped
end

-- Agents an older ccd wrote into the tag-set index (they are in none of its sets yet).
local function index_tagsets_of(ids)
  for _, id in ipairs(ids) do
    local rec = load_agent(id)
    if rec then index_tagset(id, nil, tagset_of(rec.tags), listed(rec), free_score(rec)) end
  end
  return #ids
end

-- The index of every agent, built here if no daemon built it at its start (Routing's
-- index_tagsets, a slice at a time, then mark_tagsets): one long script otherwise.
local function ensure_tagsets()
  if redis.call("EXISTS", P .. "agents:tagsets") == 1 then return end
  index_tagsets_of(redis.call("SMEMBERS", P .. "agents"))
  redis.call("SET", P .. "agents:tagsets", "1")
end

local function op_index_tagsets(ids)
  return index_tagsets_of(ids)
end

local function op_mark_tagsets()
  redis.call("SET", P .. "agents:tagsets", "1")
  return 1
end

-- The tag sets of agents carrying every one of `tags` (two tags or more).
local function tagsets_with(tags)
  ensure_tagsets()
  local args = {"SINTER"}
  for _, t in ipairs(tags) do args[#args + 1] = P .. "agents:tagsets:" .. t end
  return redis.call(unpack(args))
end

local function carries(rec, tags)
  local mine = {}
  for _, t in ipairs(rec.tags or {}) do mine[t] = true end
  for _, t in ipairs(tags) do
    if not mine[t] then return false end
  end
  return true
end

-- Reads the next agents of a tag set's free list: one at first (most searches need no
-- more), then eight at a time.
local function next_head(h)
  local want = h.off == 0 and 1 or 8
  local page = redis.call("ZRANGEBYSCORE", h.key, "-inf", h.hi, "WITHSCORES", "LIMIT", h.off, want)
  h.page, h.pos, h.off, h.more = page, 1, h.off + #page / 2, #page == 2 * want
end

-- Free agents with several tags: the free lists of every tag set holding them, merged by
-- score then id (the order one list of them all would have). Every agent seen carries the
-- tags, so the work grows with the tag sets in use, not with the agents. `skipped`: ids.
local function find_in_tagsets(tags, skipped, limit)
  local heads, found = {}, {}
  for _, set in ipairs(tagsets_with(tags)) do
    local h = {key = P .. "agents:freeset:" .. set, hi = tagset_size(set) * BUCKET + NOW, off = 0}
    next_head(h)
    heads[#heads + 1] = h
  end
  while true do
    local best, best_score, best_id = nil, nil, nil
    for _, h in ipairs(heads) do
      if h.pos <= #h.page then
        local id, score = h.page[h.pos], tonumber(h.page[h.pos + 1])
        if best == nil or score < best_score or (score == best_score and id < best_id) then
          best, best_score, best_id = h, score, id
        end
      end
    end
    if best == nil then return found end
    best.pos = best.pos + 2
    if best.pos > #best.page and best.more then next_head(best) end
    if not skipped[best_id] then
      local rec = load_agent(best_id)
      if rec and is_free(rec, NOW) and carries(rec, tags) then
        found[#found + 1] = {best_id, rec}
        if #found >= limit then return found end
      end
    end
  end
end

-- Agents lacking a tag looked at on the rarest tag's list before the tag sets are merged.
local WALK_MISSES = 16

-- The first free agents carrying every tag, in routing order (fewest tags, longest idle),
-- not in `skip` (a set key or nil), `limit` at most. It walks the free list of the rarest
-- tag (of the only one; of all agents for none), one tag-count bucket at a time, checking
-- the other tags. Where agents lacking them head that list (idle longest: no call wants
-- their combination), it merges the free lists of the tag sets holding the tags instead.
local function find_agent(tags, skip, limit)
  local walk, rarest, size = P .. "agents:free", nil, nil
  for _, t in ipairs(tags) do
    local key = P .. "agents:free:" .. t
    local n = redis.call("ZCARD", key)
    if size == nil or n < size then size, walk, rarest = n, key, t end
  end
  if size == 0 then return {} end
  local others = {}
  for _, t in ipairs(tags) do
    if t ~= rarest then others[#others + 1] = t end
  end
  local skipped, nt, found, misses = skip_set(skip), #tags, {}, 0
  for _ = 1, 64 do
    local first = redis.call("ZRANGEBYSCORE", walk, nt * BUCKET, "+inf", "WITHSCORES", "LIMIT", 0, 1)
    if #first == 0 then break end
    nt = math.floor(tonumber(first[2]) / BUCKET)
    local lo, off = nt * BUCKET, 0
    while true do
      local ids = redis.call("ZRANGEBYSCORE", walk, lo, lo + NOW, "LIMIT", off, 64)
      if #ids == 0 then break end
      for _, id in ipairs(ids) do
        if not skipped[id] then
          if has_tags(id, others) then
            local rec = load_agent(id)
            if rec and is_free(rec, NOW) then
              found[#found + 1] = {id, rec}
              if #found >= limit then return found end
            end
          else
            misses = misses + 1
            if misses > WALK_MISSES then return find_in_tagsets(tags, skipped, limit) end
          end
        end
      end
      off = off + #ids
    end
    nt = nt + 1
  end
  return found
end

-- How many agents logged in with a registered phone carry the tags, and how many of them
-- the call has not been offered to yet (both capped: only "none" and "some" matter).
local function ready_counts(tags, tried_key)
  local tried = redis.call("SMEMBERS", tried_key)
  local args = {"SINTERCARD", #tags + 1, P .. "agents:ready"}
  for _, t in ipairs(tags) do args[#args + 1] = P .. "agents:tag:" .. t end
  args[#args + 1] = "LIMIT"
  args[#args + 1] = #tried + 1
  local ready = redis.call(unpack(args))
  local gone = 0
  for _, id in ipairs(tried) do
    if redis.call("SISMEMBER", P .. "agents:ready", id) == 1 and has_tags(id, tags) then
      gone = gone + 1
    end
  end
  return ready, ready - gone
end

-- Calls -----------------------------------------------------------------------------------------

local function list_name(queue, tags)
  if #tags == 0 then return queue .. ":_" end
  return queue .. ":" .. table.concat(tags, "+")
end

local function list_tags(name)
  local tags = {}
  local rest = string.sub(name, (string.find(name, ":", 1, true) or 0) + 1)
  if rest == "_" then return tags end
  for t in string.gmatch(rest, "[^+]+") do tags[#tags + 1] = t end
  return tags
end

local function enqueue(call, queue, tags, order)
  local name = list_name(queue, tags)
  local previous = redis.call("HGET", P .. "wait:of", call)
  if previous == name then return end
  if previous then
    if redis.call("ZREM", P .. "wait:" .. previous, call) == 1 and
       redis.call("HINCRBY", P .. "wait:lists", previous, -1) <= 0 then
      redis.call("HDEL", P .. "wait:lists", previous)
    end
  end
  redis.call("ZADD", P .. "wait:" .. name, order, call)
  redis.call("HINCRBY", P .. "wait:lists", name, 1)
  redis.call("HSET", P .. "wait:of", call, name)
end

local function dequeue(call)
  local name = redis.call("HGET", P .. "wait:of", call)
  if not name then return 0 end
  redis.call("HDEL", P .. "wait:of", call)
  if redis.call("ZREM", P .. "wait:" .. name, call) == 1 and
     redis.call("HINCRBY", P .. "wait:lists", name, -1) <= 0 then
    redis.call("HDEL", P .. "wait:lists", name)
  end
  return 1
end

-- The node hunting `call` if it is alive, else nil (the call waits to be taken over).
local function live_owner(call)
  local owner = redis.call("GET", P .. "lease:call." .. call)
  if owner and (owner == ME or redis.call("EXISTS", P .. "node:" .. owner) == 1) then
    return owner
  end
  return nil
end

-- A call's lease for this node: free, ours already, or held by a node that stopped beating.
local function take_lease(call)
  local key = P .. "lease:call." .. call
  local owner = redis.call("GET", key)
  if owner and owner ~= ME and redis.call("EXISTS", P .. "node:" .. owner) == 1 then
    return false
  end
  redis.call("SET", key, ME, "PX", MAP_TTL)
  return true
end

-- Match or wait: reserve the best free agent for `call` or put it in its waiting list.
-- tried: the call's tried set (its agents are skipped); preferred: an agent to try first.
local function match_call(call, queue, order, tags, leg, job, preferred)
  local tried = P .. "tried:" .. call
  local result = {}
  if preferred and preferred ~= "" then
    local rec = load_agent(preferred)
    if rec and is_free(rec, NOW) and has_tags(preferred, tags)
       and redis.call("SISMEMBER", tried, preferred) == 0 then
      dequeue(call)
      result.s, result.agent = "reserved", reserve(preferred, rec, call, leg, job)
      return result
    end
    result.fallback = true
  end
  local found = find_agent(tags, tried, 1)
  if found and found[1] then
    dequeue(call)
    result.s = "reserved"
    result.agent = reserve(found[1][1], found[1][2], call, leg, job)
    return result
  end
  enqueue(call, queue, tags, order)
  local ready, untried = ready_counts(tags, tried)
  result.s, result.ready, result.untried = "waiting", ready, untried
  return result
end

-- A call enters its queue: lease, record, priority and tags from the customer, then match.
-- args: call, record bytes, queue, base priority, entered_at, vip boost, language tag prefix,
--       number (normalised, or ""), leg, job, preferred agent (or ""), {tags}
local function op_enter(call, record, queue, prio, entered, boost, lang, number, leg, job,
                        preferred, tags)
  if not take_lease(call) then return {s = "taken"} end
  if not redis.call("SET", P .. "call:" .. call, record, "NX") then return {s = "known"} end
  prio = tonumber(prio)
  local wanted = {}
  for _, t in ipairs(tags) do wanted[t] = true end
  if number ~= "" then
    local raw = redis.call("GET", P .. "customer:" .. number)
    local ok, customer = false, nil
    if raw then ok, customer = pcall(cmsgpack.unpack, raw) end
    if ok and type(customer) == "table" then
      if customer.vip == true then prio = prio + tonumber(boost) end
      local language = customer.language
      if type(language) == "string" and language ~= "" and lang ~= "" then
        local tag = lang .. (string.match(language, "^([^-]+)") or language)
        -- Only when someone carries it: else the queue's own tags serve the caller better.
        if not wanted[tag] and redis.call("SCARD", P .. "agents:tag:" .. tag) > 0 then
          wanted[tag] = true
          tags[#tags + 1] = tag
          table.sort(tags)
        end
      end
    end
  end
  prio = math.max(0, math.min(99, prio))
  local order = (99 - prio) * BUCKET + tonumber(entered)
  redis.call("SADD", P .. "calls", call)
  redis.call("ZADD", P .. "queue:" .. queue, order, call)
  local result = match_call(call, queue, order, tags, leg, job, preferred)
  result.prio, result.tags, result.order = prio, tags, order
  return result
end

-- The best waiting call an agent carrying `tags` may take: the lowest order key over every
-- list whose tags it carries, skipping calls that tried `id` (nil: none skipped) and calls
-- whose daemon died (left to be taken over). Returns call, score, owner.
local function best_call(id, tags)
  local mine = {}
  for _, t in ipairs(tags or {}) do mine[t] = true end
  local best, best_score, best_owner = nil, nil, nil
  for _, name in ipairs(redis.call("HKEYS", P .. "wait:lists")) do
    local fits = true
    for _, t in ipairs(list_tags(name)) do
      if not mine[t] then fits = false break end
    end
    if fits then
      local key = P .. "wait:" .. name
      for off = 0, 248, 8 do
        local head = redis.call("ZRANGE", key, off, off + 7, "WITHSCORES")
        if #head == 0 then break end
        local done = false
        for i = 1, #head, 2 do
          local call, score = head[i], tonumber(head[i + 1])
          if best_score ~= nil and score >= best_score then done = true break end
          if not id or redis.call("SISMEMBER", P .. "tried:" .. call, id) == 0 then
            local owner = live_owner(call)
            if owner then
              best, best_score, best_owner = call, score, owner
              done = true
              break
            end
          end
        end
        if done then break end
      end
    end
  end
  return best, best_score, best_owner
end

-- Reserve the free agent for a waiting call and tell the call's daemon when it is another.
local function give(id, rec, call, owner, leg, job)
  dequeue(call)
  local agent = reserve(id, rec, call, leg, job)
  if owner ~= ME then
    redis.call("PUBLISH", P .. "notify:" .. owner,
      cmsgpack.pack({call = call, agent = agent, leg = leg, job = job}))
    return {call = call, node = owner}
  end
  return {call = call, agent = agent}
end

-- A free agent: the best waiting call for it, reserved ({call, agent} or {call, node}).
local function op_free(id, leg, job)
  local rec = load_agent(id)
  if not rec or not is_free(rec, NOW) then return false end
  local call, _, owner = best_call(id, rec.tags)
  if not call then return false end
  return give(id, rec, call, owner, leg, job)
end

-- A free agent for a callback request of queue order `order`, unless a waiting call this
-- agent could take comes first by the same order (then that call gets the agent, as with
-- `free`): one order decides who gets an agent, callers or callbacks.
local function op_claim(id, request, order, leg, job)
  local rec = load_agent(id)
  if not rec or not is_free(rec, NOW) then return false end
  local call, score, owner = best_call(id, rec.tags)
  if call and score < tonumber(order) then return give(id, rec, call, owner, leg, job) end
  return {request = request, agent = reserve(id, rec, request, leg, job)}
end

-- Is a call waiting that agents carrying `tags` could take, ahead of queue order `order`?
local function op_ahead(order, tags)
  local call, score = best_call(nil, tags)
  return call ~= nil and score < tonumber(order)
end

-- The operations -------------------------------------------------------------------------------

local function op_match(call, queue, order, leg, job, tags)
  return match_call(call, queue, tonumber(order), tags, leg, job, nil)
end

local function op_untry(call, agent)
  return redis.call("SREM", P .. "tried:" .. call, agent)
end

local function op_unoffer(call)
  return redis.call("DEL", P .. "offer:" .. call)
end

local function op_dequeue(call)
  return dequeue(call)
end

local function op_leave(call, queue)
  return redis.call("ZREM", P .. "queue:" .. queue, call)
end

-- The call is over: out of every index; its record kept `ttl` ms for the views; lease gone.
local function op_finish(call, queue, record, ttl)
  dequeue(call)
  redis.call("ZREM", P .. "queue:" .. queue, call)
  redis.call("SREM", P .. "calls", call)
  redis.call("DEL", P .. "tried:" .. call, P .. "offer:" .. call)
  redis.call("SET", P .. "call:" .. call, record, "PX", tonumber(ttl))
  local key = P .. "lease:call." .. call
  if redis.call("GET", key) == ME then redis.call("DEL", key) end
  return 1
end

-- Redis lost its data: a daemon puts back a call it hunts (record, lease, live set, queue).
local function op_restore(call, queue, record, order)
  take_lease(call)
  redis.call("SET", P .. "call:" .. call, record)
  redis.call("SADD", P .. "calls", call)
  redis.call("ZADD", P .. "queue:" .. queue, tonumber(order), call)
  return 1
end

local function op_lease(call)
  return take_lease(call) and 1 or 0
end

local function op_release(call)
  local key = P .. "lease:call." .. call
  if redis.call("GET", key) == ME then return redis.call("DEL", key) end
  return 0
end

-- Agents free now who could take a waiting call: the head of every waiting list is matched
-- (the periodic safety net for a wake-up lost between two daemons). pairs: {leg, job}...
local function op_sweep(pairs_)
  local out, used = {}, 0
  local lists = redis.call("HKEYS", P .. "wait:lists")
  for _, name in ipairs(lists) do
    if used >= #pairs_ then break end
    local head = redis.call("ZRANGE", P .. "wait:" .. name, 0, 0, "WITHSCORES")
    if #head > 0 then
      local call = head[1]
      local owner = live_owner(call)
      if owner then
        local tags = list_tags(name)
        local found = find_agent(tags, P .. "tried:" .. call, 1)
        if found and found[1] then
          used = used + 1
          local leg, job = pairs_[used][1], pairs_[used][2]
          dequeue(call)
          local agent = reserve(found[1][1], found[1][2], call, leg, job)
          if owner ~= ME then
            redis.call("PUBLISH", P .. "notify:" .. owner,
              cmsgpack.pack({call = call, agent = agent, leg = leg, job = job}))
          else
            out[#out + 1] = {call = call, agent = agent}
          end
        end
      end
    end
  end
  return {matched = out, lists = lists}
end

-- Free agents with the tags, in routing order, without reserving them (views, the dialer).
local function op_candidates(limit, tags)
  local ids = {}
  for _, pair in ipairs(find_agent(tags, nil, tonumber(limit)) or {}) do ids[#ids + 1] = pair[1] end
  return ids
end

-- How many agents carrying every tag are free now, counted by score ranges (no record read):
-- one tag or none from its free list, bucket by bucket; several from their tag sets' lists.
local function op_count_free(tags)
  local count = 0
  if #tags >= 2 then
    for _, set in ipairs(tagsets_with(tags)) do
      count = count + redis.call("ZCOUNT", P .. "agents:freeset:" .. set, "-inf",
        tagset_size(set) * BUCKET + NOW)
    end
    return count
  end
  local walk, nt = P .. "agents:free", 0
  if #tags == 1 then walk = walk .. ":" .. tags[1] end
  for _ = 1, 64 do
    local first = redis.call("ZRANGEBYSCORE", walk, nt * BUCKET, "+inf", "WITHSCORES", "LIMIT", 0, 1)
    if #first == 0 then break end
    nt = math.floor(tonumber(first[2]) / BUCKET)
    local lo = nt * BUCKET
    count = count + redis.call("ZCOUNT", walk, lo, lo + NOW)
    nt = nt + 1
  end
  return count
end

local OPS = {
  claim = op_claim, ahead = op_ahead,
  count_free = op_count_free,
  index_tagsets = op_index_tagsets, mark_tagsets = op_mark_tagsets,
  candidates = op_candidates,
  write = op_write, delete = op_delete, reserve = op_reserve, enter = op_enter,
  match = op_match, free = op_free, untry = op_untry, unoffer = op_unoffer,
  dequeue = op_dequeue, leave = op_leave, finish = op_finish, lease = op_lease,
  release = op_release, sweep = op_sweep, restore = op_restore,
}

local results = {}
for i, op in ipairs(cmsgpack.unpack(ARGV[5])) do
  local fn = OPS[op[1]]
  if not fn then return redis.error_reply("unknown routing operation " .. tostring(op[1])) end
  local r = fn(unpack(op, 2))
  if r == nil then r = false end
  results[i] = r
end
return cmsgpack.pack(results)
