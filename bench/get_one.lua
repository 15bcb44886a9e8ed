-- GET the connection of one tenant with the integration token.
local token = os.getenv("BENCH_TOKEN")
local path = "/tenants/" .. os.getenv("BENCH_TENANT") .. "/creative-cloud-connection"
local headers = { ["Authorization"] = "Bearer " .. token }
request = function()
  return wrk.format("GET", path, headers)
end
