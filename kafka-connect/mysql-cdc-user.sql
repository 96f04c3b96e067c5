-- The account Debezium reads MySQL with (kafka-connect/debezium-outbox.json): the binary log
-- (REPLICATION SLAVE to stream it, REPLICATION CLIENT to read its position; MariaDB calls the
-- latter BINLOG MONITOR and takes this name for it) and SELECT on the outbox table, for the
-- snapshot and the table's schema. Nothing else: the orders, customers and sessions stay unread,
-- though the binary log carries every table's changes to whoever may stream it, which is why
-- REPLICATION SLAVE is the one grant here to guard like the root password.
-- The table grant needs the table, so this runs after the Django migrations: the compose service
-- `cdc-grants` (after `init`) sources it with the session variables below set, and so do the
-- tests against MariaDB. Prepared statements because CREATE USER and GRANT take no variables.
--   @cdc_user, @cdc_password, @cdc_database
SET @cdc_account = CONCAT(QUOTE(@cdc_user), '@''%''');

SET @statement = CONCAT('CREATE USER IF NOT EXISTS ', @cdc_account, ' IDENTIFIED BY ', QUOTE(@cdc_password));
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;

-- A password changed in .env takes effect at the next start.
SET @statement = CONCAT('ALTER USER ', @cdc_account, ' IDENTIFIED BY ', QUOTE(@cdc_password));
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;

SET @statement = CONCAT('GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO ', @cdc_account);
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;

SET @statement = CONCAT('GRANT SELECT ON `', @cdc_database, '`.outbox TO ', @cdc_account);
PREPARE statement FROM @statement;
EXECUTE statement;
DEALLOCATE PREPARE statement;
