-- What the scripts that spread their requests over a list share: each wrk thread (BENCH_THREADS of
-- them, numbered in `setup`) walks its own slice of the list in order, again and again, so no two
-- threads ever send the same item at once. Loaded with dofile; returns `next_in_slice`.
local threads = tonumber(os.getenv("BENCH_THREADS"))
local counter = 0
function setup(thread)
  thread:set("tid", counter)
  counter = counter + 1
end
local k = 0
-- The place of this thread's next request in a list of `n` items: the item's index (from 0) and
-- how many times the thread has walked its slice before.
return function(n)
  local size = math.floor(n / threads)
  local index = tid * size + (k % size)
  local pass = math.floor(k / size)
  k = k + 1
  return index, pass
end
