-- Argo CD health of a codekiln SandboxPool (a long-running service). `obj` is the resource.
-- Healthy: Ready (at least the minimum serving, also while it scales). Degraded: SandboxUnavailable (the
-- pods cannot isolate runs: a configuration problem). Suspended: scaled to zero. Progressing otherwise.
local hs = {}
local function condition(status, type)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == type then return c end
  end
  return nil
end
if obj.status == nil or obj.status.conditions == nil then
  hs.status = "Progressing"
  hs.message = "Waiting for the codekiln operator"
  return hs
end
local status = obj.status
if obj.metadata ~= nil and obj.metadata.generation ~= nil and status.observedGeneration ~= nil
    and status.observedGeneration < obj.metadata.generation then
  hs.status = "Progressing"
  hs.message = "Waiting for the operator to observe generation " .. tostring(obj.metadata.generation)
  return hs
end
local ready = condition(status, "Ready")
local progressing = condition(status, "Progressing")
if ready ~= nil and ready.status == "True" then
  hs.status = "Healthy"
  hs.message = ready.message or "Ready"
  if progressing ~= nil and progressing.status == "True" then
    hs.message = hs.message .. "; " .. (progressing.message or "scaling")
  end
elseif ready ~= nil and ready.reason == "SandboxUnavailable" then
  hs.status = "Degraded"
  hs.message = ready.message or "the sandbox cannot isolate runs"
elseif ready ~= nil and ready.reason == "ScaledToZero" then
  hs.status = "Suspended"
  hs.message = "spec.replicas is 0"
else
  hs.status = "Progressing"
  hs.message = (ready ~= nil and ready.message) or "Waiting for sandbox servers"
end
return hs
