-- wrk script: POST the images given after `--` in turn, as image/jpeg
-- (bench/load.sh, deploy/capacity.sh).
local bodies, i = {}, 0
function init(args)
  for _, path in ipairs(args) do
    local f = assert(io.open(path, "rb"))
    bodies[#bodies + 1] = f:read("*all")
    f:close()
  end
end
function request()
  i = i % #bodies + 1
  return wrk.format("POST", "/detect", {["Content-Type"] = "image/jpeg"}, bodies[i])
end
