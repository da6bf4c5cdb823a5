"""What people look at: dashboards and saved searches (``dashboards``), the report (``report``)."""
