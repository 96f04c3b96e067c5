-- Grafana reads the outbox table for the pipeline-health dashboard: a read-only account, so a
-- dashboard query can never change the shop's data. Run by the MySQL image on its first start
-- (mounted into /docker-entrypoint-initdb.d by docker-compose.yml); the tables come later from
-- the Django migrations, so the grant is on the database.
CREATE USER IF NOT EXISTS 'grafana'@'%' IDENTIFIED BY 'grafana123';
GRANT SELECT ON ecommerce.* TO 'grafana'@'%';
