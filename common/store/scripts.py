"""The Lua scripts behind `common.store`: each runs atomically inside Redis.

State changes check the transition table (passed in by the store from `common.states`), so a
late or repeated write can never move a task out of a final state.
"""

# Pushes the task's Celery message (ARGV[1]) onto its queue (the last key), when one is given,
# in the same script that wrote the row: no accepted task ever waits without its message.
_QUEUE_MESSAGE = """
if ARGV[1] ~= '' then redis.call('LPUSH', KEYS[#KEYS], ARGV[1]) end
"""

# Stores a task's sealed password (ARGV[n]) for ARGV[n+1] seconds in Redis memory only: the
# write is not propagated to the AOF or to replicas, so no file of Redis ever holds it (a
# restart loses it, and a task that then needs it fails with PasswordUnavailable). Only an
# AOF rewrite or RDB save taken while the task runs could capture it, still sealed.
def _keep_in_memory(key: int, value: int) -> str:
    return f"""
if ARGV[{value}] ~= '' then
  if redis.set_repl then redis.set_repl(redis.REPL_NONE) end
  redis.call('SET', KEYS[{key}], ARGV[{value}], 'EX', ARGV[{value + 1}])
  if redis.set_repl then redis.set_repl(redis.REPL_ALL) end
end
"""


# The ApiTask document of a task row, rendered inside Redis by every script that changes a
# field it shows, and kept in the row (`document`) ready to send: a task poll then reads one
# string instead of decoding the hash, building a row and dumping it through the schema.
# Keys in the order the API's JSON has them (sorted); structured fields are stored as JSON
# already and go in as they are. `documentStamp` names the lastUpdated and state it was made
# from, so a reader can tell a document that a writer of another version left behind.
_RENDER_DOCUMENT = """
local function render_document(key)
  local f = redis.call('HMGET', key, 'endTime', 'error', 'id', 'lastUpdated', 'progress',
                       'result', 'resultType', 'startTime', 'state', 'user', 'warnings',
                       'workflowInfo')
  local function int(v, default)
    if v and string.match(v, '^%-?%d+$') then return v end
    return default
  end
  local function json(v, default)
    if v and v ~= '' then return v end
    return default
  end
  local function text(v) return cjson.encode(v or '') end
  local resultType = 'null'
  if f[7] and f[7] ~= '' then resultType = text(f[7]) end
  local document = '{"endTime":' .. int(f[1], '-1') .. ',"error":' .. json(f[2], 'null')
    .. ',"id":' .. text(f[3]) .. ',"lastUpdated":' .. int(f[4], '0')
    .. ',"progress":' .. int(f[5], '0') .. ',"result":' .. json(f[6], 'null')
    .. ',"resultType":' .. resultType .. ',"startTime":' .. int(f[8], '0')
    .. ',"state":' .. text(f[9]) .. ',"user":' .. text(f[10])
    .. ',"warnings":' .. json(f[11], '[]') .. ',"workflowInfo":'
    .. json(f[12], '{"type":"","resourceType":"","resourceId":"","resourceName":""}') .. '}'
  redis.call('HSET', key, 'document', document,
             'documentStamp', (f[4] or '') .. ' ' .. (f[9] or ''))
  return document
end
"""

# A write made on behalf of an API caller checks the caller's session in the same script,
# with the checks TOUCH_SESSION makes. The API names the user it expects (the session's user
# when this process last saw the token): the user's keys are then declared like any other.
# KEYS: session, user; ARGV: idle seconds, expected user, role required ('' for none).
# Then the script's own KEYS and ARGV follow, which the body sees from 1 as usual.
_CALLER_GATE = """
local owner = redis.call('HMGET', KEYS[1], 'user', 'generation', 'roles')
if not owner[1] then return {'unauthenticated', ''} end
if owner[1] ~= ARGV[2] then return {'unauthenticated', ''} end
local account = redis.call('HMGET', KEYS[2], 'name', 'generation')
if not account[1] or account[2] ~= owner[2] then
  redis.call('DEL', KEYS[1])
  return {'unauthenticated', ''}
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
if ARGV[3] ~= '' then
  local allowed = false
  for _, role in ipairs(cjson.decode(owner[3] or '[]')) do
    if role == ARGV[3] then allowed = true end
  end
  if not allowed then return {'forbidden', ''} end
end
local KEYS = {unpack(KEYS, 3)}
local ARGV = {unpack(ARGV, 4)}
"""


def gated(script: str) -> str:
    """`script` run only for a caller whose session is live (and holds the role)."""
    return _CALLER_GATE + script


# With alert targets configured (KEYS[config]), a task's end is an event for them, pushed onto
# KEYS[events] as "<final state> <task id>"; the oldest beyond ALERT_EVENTS_KEPT are dropped.
ALERT_EVENTS_KEPT = 10_000


def _leave_alert_event(config: int, events: int, event: str) -> str:
    return f"""
if redis.call('EXISTS', KEYS[{config}]) == 1 then
  redis.call('RPUSH', KEYS[{events}], {event})
  redis.call('LTRIM', KEYS[{events}], -{ALERT_EVENTS_KEPT}, -1)
end
"""


# KEYS: task, all tasks, user's tasks, backups, pending backups, backup->task, secret,
#       running tasks, user's running tasks, metrics, [message queue]
# ARGV: message ('' for none), quota, task id, start time, backup id, sealed password,
#       secret ttl, user cap, then the row's field/value pairs
CREATE_BACKUP_TASK = _RENDER_DOCUMENT + """
local existing = redis.call('GET', KEYS[6])
if existing then return {'exists', existing} end
local running = redis.call('SCARD', KEYS[9])
if running >= tonumber(ARGV[8]) then return {'user_busy', tostring(running)} end
local count = redis.call('ZCARD', KEYS[4]) + redis.call('SCARD', KEYS[5])
if count >= tonumber(ARGV[2]) then return {'quota', tostring(count)} end
redis.call('HSET', KEYS[1], unpack(ARGV, 9))
redis.call('ZADD', KEYS[2], ARGV[4], ARGV[3])
redis.call('ZADD', KEYS[3], ARGV[4], ARGV[3])
redis.call('SADD', KEYS[8], ARGV[3])
redis.call('SADD', KEYS[9], ARGV[3])
redis.call('SADD', KEYS[5], ARGV[5])
redis.call('SET', KEYS[6], ARGV[3])
redis.call('HINCRBY', KEYS[10], (redis.call('HGET', KEYS[1], 'type') or 'task') .. ':started', 1)
local document = render_document(KEYS[1])
""" + _keep_in_memory(7, 6) + _QUEUE_MESSAGE + """
return {'created', ARGV[3], document}
"""

# KEYS: task, all tasks, user's tasks, running tasks, user's running tasks, secret, metrics,
#       [message queue]
# ARGV: message ('' for none), task id, start time, user cap ('' for none), sealed password,
#       secret ttl, then the row's field/value pairs
CREATE_TASK = _RENDER_DOCUMENT + """
if ARGV[4] ~= '' then
  local running = redis.call('SCARD', KEYS[5])
  if running >= tonumber(ARGV[4]) then return {'user_busy', tostring(running)} end
end
redis.call('HSET', KEYS[1], unpack(ARGV, 7))
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
redis.call('SADD', KEYS[4], ARGV[2])
redis.call('SADD', KEYS[5], ARGV[2])
redis.call('HINCRBY', KEYS[7], (redis.call('HGET', KEYS[1], 'type') or 'task') .. ':started', 1)
local document = render_document(KEYS[1])
""" + _keep_in_memory(6, 5) + _QUEUE_MESSAGE + """
return {'created', ARGV[2], document}
"""

# KEYS[1] session; ARGV: idle seconds, the prefix of user keys. Leaves `session` set to the
# session's fields, its idle timer restarted; without a session the script returns {{}}.
# A session lives only as long as its user keeps the generation it was created under: any
# change to the user (password, roles, deletion, revocation) ends it here, and it is deleted.
# The user's key is known only once the session is read, so it is built here from the prefix:
# fine on the one Redis the service uses, not on a cluster.
_TOUCH = """
local owner = redis.call('HMGET', KEYS[1], 'user', 'generation')
if not owner[1] then return {{}} end
local user = redis.call('HMGET', ARGV[2] .. owner[1], 'name', 'generation')
if not user[1] or user[2] ~= owner[2] then
  redis.call('DEL', KEYS[1])
  return {{}}
end
local session = redis.call('HGETALL', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
"""

# KEYS: session, then any rows to read along with it
# ARGV: idle seconds, the prefix of user keys
# The session, then each row's fields: an authenticated read in one round trip. Nothing but
# the empty session comes back without a session.
TOUCH_SESSION = _TOUCH + """
local rows = {session}
for i = 2, #KEYS do rows[i] = redis.call('HGETALL', KEYS[i]) end
return rows
"""

# KEYS: session, user
# ARGV: digest, user name, roles, created, idle seconds, '1' to check the generation, the
#       generation the user had when its password was checked
# 1, or 0 without a session when the user changed since its password was checked (a login
# racing a password change must not outlive it). The session keeps the user's generation.
CREATE_SESSION = """
local generation = redis.call('HGET', KEYS[2], 'generation')
if ARGV[6] == '1' and (redis.call('EXISTS', KEYS[2]) == 0 or (generation or '') ~= ARGV[7])
then return 0 end
redis.call('HSET', KEYS[1], 'digest', ARGV[1], 'user', ARGV[2], 'roles', ARGV[3],
           'created', ARGV[4])
if generation then redis.call('HSET', KEYS[1], 'generation', generation) end
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""

# KEYS: user; ARGV: name, password hash, roles, generation
# A user created only where none exists: processes starting at once each create the
# administrator, and the second must not replace the first (its generation would end a
# session the first had just opened).
ADD_USER = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], 'name', ARGV[1], 'password', ARGV[2], 'roles', ARGV[3],
           'generation', ARGV[4])
return 1
"""

# KEYS: user
# ARGV: a new generation
# Ends every session of an existing user, which keeps its password and roles; 0 without one.
END_SESSIONS = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], 'generation', ARGV[1])
return 1
"""

PROGRESS = _RENDER_DOCUMENT + """
local state = redis.call('HGET', KEYS[1], 'state')
if state ~= 'RUNNING' then return 0 end
local current = tonumber(redis.call('HGET', KEYS[1], 'progress') or '0')
local wanted = math.min(tonumber(ARGV[1]), 99)
if wanted <= current then return 0 end
redis.call('HSET', KEYS[1], 'progress', wanted, 'lastUpdated', ARGV[2])
render_document(KEYS[1])
return 1
"""

WARNING = _RENDER_DOCUMENT + """
if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return 0 end
local warnings = cjson.decode(redis.call('HGET', KEYS[1], 'warnings') or '[]')
if #warnings >= tonumber(ARGV[2]) then return 0 end
table.insert(warnings, cjson.decode(ARGV[1]))
redis.call('HSET', KEYS[1], 'warnings', cjson.encode(warnings), 'lastUpdated', ARGV[3])
render_document(KEYS[1])
return 1
"""

# KEYS: task, secret, lease, pending set, backups zset, backup hash, backup->task,
#       running tasks, user's running tasks, cancel flag, alert targets, alert events,
#       the backup's hold (let go when the task holding it ends)
# ARGV: target, allowed-from, now, ttl, result, resultType, error, backupId, generatedOn,
#       then the backup row's field/value pairs when the finish stores a backup.
# With alert targets configured, the task's end is an event for them, left in the same step.
FINISH = _RENDER_DOCUMENT + """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 0 end
local allowed = false
for s in string.gmatch(ARGV[2], '[^,]+') do if s == state then allowed = true end end
if not allowed then return 0 end
local fields = {'state', ARGV[1], 'endTime', ARGV[3], 'lastUpdated', ARGV[3],
                'result', ARGV[5], 'resultType', ARGV[6], 'error', ARGV[7]}
if ARGV[1] == 'SUCCEEDED' then table.insert(fields, 'progress'); table.insert(fields, '100') end
redis.call('HSET', KEYS[1], unpack(fields))
render_document(KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
redis.call('DEL', KEYS[2], KEYS[3], KEYS[10])
local id = redis.call('HGET', KEYS[1], 'id')
redis.call('SREM', KEYS[8], id)
redis.call('SREM', KEYS[9], id)
if redis.call('GET', KEYS[13]) == id then redis.call('DEL', KEYS[13]) end
""" + _leave_alert_event(11, 12, "ARGV[1] .. ' ' .. id") + """
if ARGV[8] ~= '' then
  redis.call('SREM', KEYS[4], ARGV[8])
  if #ARGV > 9 then
    redis.call('HSET', KEYS[6], unpack(ARGV, 10))
    redis.call('ZADD', KEYS[5], ARGV[9], ARGV[8])
  elseif ARGV[1] == 'FAILED' then
    redis.call('DEL', KEYS[7])
  end
end
return 1
"""

# Claim a task for one run: a lease (set if absent, renewed by the holder's heartbeat) keeps a
# redelivered message from running the same task twice at once.
CLAIM = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {'missing', '0'} end
if state ~= 'RUNNING' then return {'final', '0'} end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return {'busy', '0'} end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
local attempts = redis.call('HINCRBY', KEYS[1], 'attempts', 1)
return {'claimed', tostring(attempts)}
"""

# Take a backup off the list (and free its quota slot and id) in one step; returns its row.
# KEYS: backup hash, backups zset, backup->task, the backup's hold (a task rewriting it).
UNLIST_BACKUP = """
local row = redis.call('HGETALL', KEYS[1])
if #row == 0 then return nil end
local holder = redis.call('GET', KEYS[4])
if holder then return redis.error_reply('BACKUPBUSY ' .. holder) end
redis.call('DEL', KEYS[1], KEYS[3])
redis.call('ZREM', KEYS[2], ARGV[1])
return row
"""

# Hold a listed backup for the task that rewrites it (a rekey): while held, it is neither
# unlisted (deleted, pruned) nor rewritten by another task. The same task may take it again
# (a second attempt after its worker died); FINISH lets it go. KEYS: backup hash, hold.
# ARGV: task id, seconds the hold lasts if its task never ends (a backstop only).
# Returns 'held', 'missing' (not listed) or the id of the task that holds it.
HOLD_BACKUP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 'missing' end
local holder = redis.call('GET', KEYS[2])
if holder and holder ~= ARGV[1] then return holder end
redis.call('SET', KEYS[2], ARGV[1], 'EX', ARGV[2])
return 'held'
"""

# Change fields of a listed backup (its hash and size after a rekey); 0 when it is not listed.
# KEYS: backup hash. ARGV: field/value pairs.
UPDATE_LISTED_BACKUP = """
if redis.call('EXISTS', KEYS[1]) == 0 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV))
return 1
"""

# List a stored backup found in the storage (a catalogue rebuild): never over a listed one,
# never one whose task is still writing it. KEYS: backup hash, backups zset, pending set.
# ARGV: id, generatedOn, then the row's field/value pairs.
RELIST_BACKUP = """
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
if redis.call('SISMEMBER', KEYS[3], ARGV[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], ARGV[1])
return 1
"""

# Send a lost task again once per attempt: a requeue waiting for a worker is not repeated.
MARK_REQUEUED = """
if redis.call('HGET', KEYS[1], 'state') ~= 'RUNNING' then return 0 end
if redis.call('HGET', KEYS[1], 'requeuedAttempt') == ARGV[1] then return 0 end
redis.call('HSET', KEYS[1], 'requeuedAttempt', ARGV[1])
return 1
"""

# Cancel: a task no worker has claimed yet ends at once; a running one is flagged, and its
# worker stops at the next check. Returns 'ended', 'flagged' or 'final'.
# KEYS: task, cancel flag; ARGV: error json, now, ttl
CANCEL = """
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return 'missing' end
if state ~= 'RUNNING' then return 'final' end
redis.call('SET', KEYS[2], '1', 'EX', 86400)
if tonumber(redis.call('HGET', KEYS[1], 'attempts') or '0') > 0 then return 'flagged' end
return 'unclaimed'
"""

# Take a schedule slot once: only the tick that moves `last` from what it read runs it.
TAKE_SLOT = """
local last = redis.call('GET', KEYS[1]) or ''
if last ~= ARGV[1] then return 0 end
redis.call('SET', KEYS[1], ARGV[2])
return 1
"""

RENEW = """
if redis.call('GET', KEYS[1]) ~= ARGV[1] then return 0 end
redis.call('EXPIRE', KEYS[1], ARGV[2])
return 1
"""

# Write a task that ended before it was accepted (a synchronous check, a refused scheduled
# run), in its final state; with alert targets configured, its end is an event as in FINISH.
# KEYS: task, all tasks, user's tasks, alert targets, alert events
# ARGV: ttl, task id, start time, the row's pairs.
RECORD_FINISHED = _RENDER_DOCUMENT + """
redis.call('HSET', KEYS[1], unpack(ARGV, 4))
render_document(KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[1])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
redis.call('ZADD', KEYS[3], ARGV[3], ARGV[2])
""" + _leave_alert_event(4, 5, "redis.call('HGET', KEYS[1], 'state') .. ' ' .. ARGV[2]"
                         ) + """
return 1
"""

# KEYS: session, task; ARGV: idle seconds, the prefix of user keys
# A task poll: the session checked and touched as TOUCH_SESSION does, then the task's owner
# and its ready document. A document missing, or made from another lastUpdated or state than
# the row now has (a writer of another version changed the row), comes back as '' with the
# whole row instead, for the reader to render.
TASK_DOCUMENT = _TOUCH + """
local task = redis.call('HMGET', KEYS[2], 'user', 'document', 'documentStamp', 'lastUpdated',
                        'state')
if not task[1] and not task[5] then return {session} end
if task[2] and task[3] == (task[4] or '') .. ' ' .. (task[5] or '') then
  return {session, {task[1] or '', task[2]}}
end
return {session, {task[1] or '', ''}, redis.call('HGETALL', KEYS[2])}
"""
