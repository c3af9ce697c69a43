-- Argo CD health of a codekiln run (DataPipeline, PretrainRun, RLRun). `obj` is the resource.
-- Healthy: Succeeded. Degraded: Failed (reason: message). Suspended: spec.suspend.
-- Progressing: not yet seen by the operator, Pending (what it waits for), Running (progress), Restarting.
local hs = {}
local function condition(status, type)
  if status.conditions == nil then return nil end
  for _, c in ipairs(status.conditions) do
    if c.type == type then return c end
  end
  return nil
end
local function waiting_reason(status)
  for _, type in ipairs({"DependenciesReady", "SandboxPoolReady", "Running", "Created"}) do
    local c = condition(status, type)
    if c ~= nil and c.status == "False" and c.message ~= nil and c.message ~= "" then
      return c.message
    end
  end
  return nil
end
if obj.status == nil or obj.status.phase == nil then
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
local phase = status.phase
if phase == "Succeeded" then
  hs.status = "Healthy"
  hs.message = status.message or "Succeeded"
elseif phase == "Failed" then
  local failed = condition(status, "Failed")
  hs.status = "Degraded"
  if failed ~= nil then
    hs.message = (failed.reason or "Failed") .. ": " .. (failed.message or status.message or "")
  else
    hs.message = status.message or "Failed"
  end
elseif phase == "Suspended" then
  hs.status = "Suspended"
  hs.message = "spec.suspend is true"
elseif phase == "Restarting" then
  local restarting = condition(status, "Restarting")
  hs.status = "Progressing"
  hs.message = (restarting ~= nil and restarting.message) or "Restarting the gang"
elseif phase == "Running" then
  hs.status = "Progressing"
  local p = status.progress
  if p ~= nil and p.step ~= nil and p.totalSteps ~= nil then
    hs.message = "Running: step " .. tostring(p.step) .. "/" .. tostring(p.totalSteps)
  else
    hs.message = "Running"
  end
else
  hs.status = "Progressing"
  hs.message = waiting_reason(status) or ("Phase " .. tostring(phase))
end
return hs
