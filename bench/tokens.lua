-- GET /users/me/orgs, each request with the next token of BENCH_TOKENS_FILE (cold: every token
-- is new to the service, so nothing is cached for it yet).
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
local threads = tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local k = 0
request = function()
  local size = math.floor(#tokens / threads)
  local token = tokens[tid * size + (k % size) + 1]
  k = k + 1
  return wrk.format("GET", "/users/me/orgs", { ["Authorization"] = "Bearer " .. token })
end
