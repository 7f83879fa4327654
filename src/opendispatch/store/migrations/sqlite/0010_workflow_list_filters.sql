-- `GET /v0.1/dispatch` filters by status and by channel (a time range is a range of
-- dispatch_uuid, which workflows_by_application already answers).
--
-- Status: its own index, so a page of a rare status (`error` among millions of `completed`)
-- and the last page of any status are a walk of the matching rows, not of every workflow.
CREATE INDEX workflows_by_status ON workflows (application_id, status, dispatch_uuid);

-- Channel: the channels of the workflow's steps, `,whatsapp,sms,`, written with the workflow
-- and never changed; a filter on the rows an index walk reads (reading the submitted JSON of
-- each row instead cost five times as much). NULL for the workflows stored before: the list
-- reads those from their JSON, rather than this migration rewriting every row (about 30 us a
-- workflow, minutes for a large database, while the server cannot start); retention ages
-- them out.
ALTER TABLE workflows ADD COLUMN channels TEXT;
