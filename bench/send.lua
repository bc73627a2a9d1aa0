-- wrk script: POST text messages round-robin over the conversations in $CONVERSATIONS, as
-- the user whose access token is $TOKEN, each with a fresh clientMsgId.
local conversations = {}
for id in string.gmatch(os.getenv("CONVERSATIONS") or "", "[^,]+") do
  table.insert(conversations, id)
end
local token = os.getenv("TOKEN")
local threads = 0

function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end

local n = 0
function request()
  n = n + 1
  local conversation = conversations[(n % #conversations) + 1]
  local body = string.format('{"clientMsgId":"w%d-%d-%d","type":"text","text":"bench message %d"}', tid, os.time(), n, n)
  return wrk.format("POST", "/api/v1/conversations/" .. conversation .. "/messages",
    { ["content-type"] = "application/json", ["authorization"] = "Bearer " .. token }, body)
end

local errors = 0
function response(status, headers, body)
  if status ~= 201 then
    errors = errors + 1
  end
end
