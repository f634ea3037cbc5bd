-- The subset of Medulla's `imaging` schema that the exporter reads: the seven tables of
-- docs/database.md with the columns it uses, plus the NOT NULL columns their rows need.
-- Types follow services/contrib/imaging/sql/schema-*.sql of Medulla (TEXT names and uuids,
-- BOOL flags, `is_master` nullable).

CREATE TABLE Entity (
  id INT NOT NULL AUTO_INCREMENT,
  name TEXT NOT NULL,
  uuid TEXT NOT NULL,
  fk_default_menu INT NOT NULL DEFAULT 1,
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE ImagingServer (
  id INT NOT NULL AUTO_INCREMENT,
  name TEXT NOT NULL,
  url TEXT NOT NULL,
  packageserver_uuid TEXT NOT NULL,
  is_recursive BOOL NOT NULL DEFAULT 0,
  associated BOOL NOT NULL DEFAULT 0,
  fk_entity INT NOT NULL,
  PRIMARY KEY (id),
  KEY fk_imaging_server_entity_idx (fk_entity)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE Target (
  id INT NOT NULL AUTO_INCREMENT,
  name TEXT NOT NULL,
  uuid TEXT NOT NULL,
  `type` INT NOT NULL,
  fk_entity INT NOT NULL,
  fk_menu INT NOT NULL DEFAULT 1,
  PRIMARY KEY (id),
  KEY fk_target_type_idx (`type`),
  KEY fk_target_entity_idx (fk_entity)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE Image (
  id INT NOT NULL AUTO_INCREMENT,
  name TEXT NOT NULL,
  uuid TEXT NOT NULL,
  is_master BOOL DEFAULT FALSE,
  PRIMARY KEY (id)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE ImagingLog (
  id INT NOT NULL AUTO_INCREMENT,
  `timestamp` DATETIME,
  fk_target INT NOT NULL,
  PRIMARY KEY (id),
  KEY fk_imaging_log_target_idx (fk_target)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE MasteredOn (
  fk_image INT NOT NULL,
  fk_imaging_log INT NOT NULL,
  UNIQUE KEY (fk_image, fk_imaging_log),
  KEY fk_mastered_on_imaging_log_idx (fk_imaging_log)
) DEFAULT CHARSET=utf8mb4;

CREATE TABLE ImageOnImagingServer (
  fk_image INT NOT NULL,
  fk_imaging_server INT NOT NULL,
  UNIQUE KEY (fk_image, fk_imaging_server),
  KEY fk_image_on_imaging_server_imaging_server_idx (fk_imaging_server)
) DEFAULT CHARSET=utf8mb4;
