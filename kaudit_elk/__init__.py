"""kaudit-elk: Kubernetes audit logs made useful in Elasticsearch and OpenSearch."""

__version__ = "0.1.0"
