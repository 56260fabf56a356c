DROP TABLE session_leases;
DROP TABLE nodes;
