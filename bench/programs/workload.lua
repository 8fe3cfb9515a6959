-- A Lua program's heap, as bench/run-external measures it: binary trees
-- built and dropped (the allocation benchmark of the language shootout),
-- string building, and tables used as records and as a map.
-- Deterministic: it prints the same numbers under any allocator.
local function bottom_up(depth)
  if depth == 0 then return {} end
  depth = depth - 1
  return { bottom_up(depth), bottom_up(depth) }
end

local function check(tree)
  if tree[1] then return 1 + check(tree[1]) + check(tree[2]) end
  return 1
end

local total = 0
local long_lived = bottom_up(14)
for depth = 4, 14, 2 do
  local iters = 1 << (14 - depth + 4)
  for _ = 1, iters do total = total + check(bottom_up(depth)) end
end
total = total + check(long_lived)

local map = {}
for i = 1, 200000 do
  local key = "k" .. (i * 7919 % 100003)
  map[key] = { id = i, name = key .. "-" .. i, n = i % 97 }
end
local parts = {}
for k, v in pairs(map) do
  if v.n == 0 then parts[#parts + 1] = k end
end
table.sort(parts)
local s = table.concat(parts, ",")
print(total, #parts, #s)
