-- GET the connection of one tenant with If-None-Match: its current ETag (the 304 path).
local token = os.getenv("BENCH_TOKEN")
local path = "/tenants/" .. os.getenv("BENCH_TENANT") .. "/creative-cloud-connection"
local headers = { ["Authorization"] = "Bearer " .. token, ["If-None-Match"] = os.getenv("BENCH_ETAG") }
request = function()
  return wrk.format("GET", path, headers)
end
