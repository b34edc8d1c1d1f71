-- Whether enrollment checks the agent's AWS account against aws_account_id (issue 6).
-- On by default; it only applies when the tenant registered an account.
ALTER TABLE tenants ADD COLUMN account_binding INTEGER NOT NULL DEFAULT 1;
