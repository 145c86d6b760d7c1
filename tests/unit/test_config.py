import pytest

from services.common.config import Settings, from_container


def test_defaults_work_on_a_developer_machine():
    settings = Settings.from_env({})
    assert settings.amqp_uri == "amqp://guest:guest@127.0.0.1:5672/"
    assert settings.gateway_address == "127.0.0.1:8000"
    assert settings.retry_delays == (1.0, 5.0, 30.0)


def test_the_environment_sets_every_value():
    env = {"AMQP_URI": "amqp://u:p@rabbit:5672/prod", "MONGO_URI": "mongodb://m1,m2/?replicaSet=rs0",
           "DB_PREFIX": "bank", "JWT_SECRET": "s", "GATEWAY_ADDRESS": "0.0.0.0:8080", "MAX_WORKERS": "4",
           "RETRY_DELAYS": "2, 10", "OUTBOX_GRACE": "3", "RPC_TIMEOUT": "7", "SLA_SWEEP_BATCH": "50",
           "SLA_SWEEP_BUDGET": "0.25", "POLICIES_PATH": "/etc/complaints/policies.yaml",
           "CALENDARS_PATH": "/etc/complaints/calendars.yaml", "RECEIVED_AT_SKEW": "60",
           "RECEIVED_AT_MAX_AGE_DAYS": "400", "RETENTION_DAYS": "400"}
    assert Settings.from_env(env) == Settings(
        amqp_uri="amqp://u:p@rabbit:5672/prod", mongo_uri="mongodb://m1,m2/?replicaSet=rs0", db_prefix="bank",
        jwt_secret="s", gateway_address="0.0.0.0:8080", max_workers=4, retry_delays=(2.0, 10.0), outbox_grace=3.0,
        rpc_timeout=7.0, sla_sweep_batch=50, sla_sweep_budget=0.25, policies_path="/etc/complaints/policies.yaml",
        calendars_path="/etc/complaints/calendars.yaml", received_at_skew=60.0, received_at_max_age_days=400,
        retention_days=400)


def test_a_container_sees_the_settings_it_was_started_with():
    settings = Settings(amqp_uri="amqp://x/vh", db_prefix="t1", retry_delays=(0.2, 0.5), max_workers=3,
                        gateway_address="127.0.0.1:9999", retention_days=500)
    assert from_container(settings.nameko_config()) == settings
    with_data = Settings(calendars_path="/tmp/calendars.yaml")
    assert from_container(with_data.nameko_config()) == with_data


def test_records_are_kept_at_least_a_year_after_closing():
    assert Settings.from_env({}).retention_days >= 365
    with pytest.raises(ValueError, match="at least 365"):
        Settings.from_env({"RETENTION_DAYS": "364"})


def test_mediation_deliveries_are_set_from_the_environment():
    settings = Settings.from_env({"MEDIATION_RETRY_BASE": "0.2", "MEDIATION_RETRY_CAP": "2",
                                  "MEDIATION_RETRY_FOR": "30", "MEDIATION_TIMEOUT": "1.5",
                                  "MEDIATION_ORGANIZATIONS": "samples.yaml"})
    assert (settings.mediation_retry_base, settings.mediation_retry_cap, settings.mediation_retry_for,
            settings.mediation_timeout, settings.mediation_organizations) == (0.2, 2.0, 30.0, 1.5, "samples.yaml")
    defaults = Settings.from_env({})
    assert (defaults.mediation_retry_base, defaults.mediation_retry_cap, defaults.mediation_retry_for) == (
        10.0, 3600.0, 86400.0)
    assert from_container(settings.nameko_config()) == settings
