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
           "SLA_SWEEP_BUDGET": "0.25"}
    assert Settings.from_env(env) == Settings("amqp://u:p@rabbit:5672/prod", "mongodb://m1,m2/?replicaSet=rs0",
                                              "bank", "s", "0.0.0.0:8080", 4, (2.0, 10.0), 3.0, 7.0, 50, 0.25)


def test_a_container_sees_the_settings_it_was_started_with():
    settings = Settings(amqp_uri="amqp://x/vh", db_prefix="t1", retry_delays=(0.2, 0.5), max_workers=3,
                        gateway_address="127.0.0.1:9999")
    assert from_container(settings.nameko_config()) == settings


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
