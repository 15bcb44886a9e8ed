-- GET /users/me/orgs, each request with the next token of BENCH_TOKENS_FILE (cold: every token
-- is new to the service, so nothing is cached for it yet).
local next_in_slice = dofile((debug.getinfo(1, "S").source:match("^@(.*/)") or "") .. "slices.lua")
local tokens = {}
for line in io.lines(os.getenv("BENCH_TOKENS_FILE")) do
  tokens[#tokens + 1] = line
end
request = function()
  local token = tokens[next_in_slice(#tokens) + 1]
  return wrk.format("GET", "/users/me/orgs", { ["Authorization"] = "Bearer " .. token })
end
