-- Grafana's MySQL account: SELECT on the outbox columns the pipeline-health panels read (status
-- and its timestamps) and nothing else, so a leaked Grafana credential reads neither the shop's
-- sessions and users nor the events' payloads (which hold customers' e-mail addresses).
-- Column grants need the table, so this runs after the Django migrations: the compose service
-- `grafana-grants` (after `init`) sources it with the session variables below set, and so do the
-- tests against MariaDB. Prepared statements because CREATE USER and GRANT take no variables.
--   @grafana_user, @grafana_password, @grafana_database
SET @grafana_account = CONCAT(QUOTE(@grafana_user), '@''%''');

SET @statement = CONCAT('CREATE USER IF NOT EXISTS ', @grafana_account, ' IDENTIFIED BY ', QUOTE(@grafana_password));
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;

-- A password changed in .env takes effect at the next start.
SET @statement = CONCAT('ALTER USER ', @grafana_account, ' IDENTIFIED BY ', QUOTE(@grafana_password));
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;

SET @statement = CONCAT(
    'GRANT SELECT (id, status, created_at, published_at) ON `', @grafana_database, '`.outbox TO ',
    @grafana_account
);
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;
