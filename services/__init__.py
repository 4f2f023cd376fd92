"""siesa-sync: Siesa ERP catalogues kept in sync with Kong and WMS through Kafka."""
