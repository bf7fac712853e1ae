"""DevOps: services, deployments, logs, scaling, incidents and certificates."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import ints, pick
from counterpoint.tools import tool

DOMAIN = Domain("devops")
_SERVICES = (
    "checkout-api",
    "auth-service",
    "search-indexer",
    "billing-worker",
    "image-resizer",
    "notifications",
    "gateway",
    "reporting-db",
)
_SERVICE = pick(*_SERVICES)
_HOST = lambda rng: f"{rng.choice(('web', 'db', 'cache', 'worker'))}-{rng.randint(1, 40):02d}"  # noqa: E731
Env = Literal["production", "staging", "dev"]


@DOMAIN.register(
    asks=[
        "Is {service} healthy?",
        "What's the status of {service} in {environment}?",
        "Check {service} on {environment}.",
    ],
    say="{service} in {environment} is {status} with {healthy_pods} healthy pods.",
    values={"service": _SERVICE},
)
@tool(estimated_latency=0.25)
def get_service_status(service: str, environment: Env = "production") -> dict[str, Any]:
    """Get the health of a deployed service.

    Args:
        service: The service's name.
        environment: The environment.
    """
    f = Fake("get_service_status", service, environment)
    return {
        "service": service,
        "environment": environment,
        "status": f.pick(("healthy", "degraded", "healthy")),
        "healthy_pods": f.int(1, 12),
    }


@DOMAIN.register(
    asks=["Restart {service} in {environment}.", "Please restart {service}."],
    say="{service} in {environment} restarted in {seconds} s.",
    values={"service": _SERVICE},
)
@tool(estimated_latency=1.8)
def restart_service(service: str, environment: Env = "production") -> dict[str, Any]:
    """Restart a service.

    Args:
        service: The service's name.
        environment: The environment.
    """
    return {
        "service": service,
        "environment": environment,
        "seconds": Fake("restart_service", service, environment).int(4, 60),
    }


@DOMAIN.register(
    asks=[
        "What's the CPU usage on {host}?",
        "How busy has {host} been over the last {minutes} minutes?",
    ],
    say="{host} averaged {cpu_percent}% CPU over {minutes} minutes.",
    values={"host": _HOST, "minutes": ints(5, 120)},
)
@tool(estimated_latency=0.3)
def get_cpu_usage(host: str, minutes: int = 15) -> dict[str, Any]:
    """Get a host's average CPU usage.

    Args:
        host: The host's name.
        minutes: The window in minutes.
    """
    return {
        "host": host,
        "minutes": minutes,
        "cpu_percent": Fake("get_cpu_usage", host, minutes).num(1, 99),
    }


@DOMAIN.register(
    asks=[
        "What's the latest release of {service}?",
        "Which version of {service} was released last?",
    ],
    say="The latest release of {service} is {version}, from {released}.",
    values={"service": _SERVICE},
)
@tool(estimated_latency=0.2)
def get_latest_release(service: str) -> dict[str, Any]:
    """Get a service's latest released version.

    Args:
        service: The service's name.
    """
    f = Fake("get_latest_release", service)
    return {
        "service": service,
        "version": f"v{f.int(1, 9)}.{f.int(0, 30)}.{f.int(0, 9)}",
        "released": f"2026-{f.int(1, 12):02d}-{f.int(1, 28):02d}",
    }


@DOMAIN.register(
    asks=[
        "Deploy {service} {version} to {environment}.",
        "Roll out version {version} of {service} on {environment}.",
    ],
    then=["then deploy it to {environment}", "and roll that version out to {environment}"],
    say="{service} {version} is deploying to {environment} ({deployment_id}).",
    links={"version": "get_latest_release.version", "service": "get_latest_release.service"},
    values={
        "service": _SERVICE,
        "version": lambda rng: f"v{rng.randint(1, 9)}.{rng.randint(0, 30)}.{rng.randint(0, 9)}",
    },
)
@tool(estimated_latency=2.0)
def deploy_version(service: str, version: str, environment: Env = "staging") -> dict[str, Any]:
    """Deploy a version of a service to an environment.

    Args:
        service: The service's name.
        version: The version tag, e.g. "v2.3.1".
        environment: Where to deploy.
    """
    return {
        "service": service,
        "version": version,
        "environment": environment,
        "deployment_id": Fake("deploy_version", service, version, environment).code("DP", 6),
    }


@DOMAIN.register(
    asks=["What's the state of deployment {deployment_id}?", "Is deployment {deployment_id} done?"],
    then=[
        "then tell me how the deployment is going",
        "and then check that the deployment finished",
    ],
    say="Deployment {deployment_id} is {state} ({progress_percent}% done).",
    links={"deployment_id": "deploy_version.deployment_id"},
    values={"deployment_id": lambda rng: f"DP{rng.randint(100000, 999999)}"},
)
@tool(estimated_latency=0.15)
def get_deployment_status(deployment_id: str) -> dict[str, Any]:
    """Get the progress of a deployment.

    Args:
        deployment_id: The deployment's id.
    """
    f = Fake("get_deployment_status", deployment_id)
    return {
        "deployment_id": deployment_id,
        "state": f.pick(("rolling out", "succeeded", "succeeded")),
        "progress_percent": f.int(10, 100),
    }


@DOMAIN.register(
    asks=[
        "Show the last {lines} {level} logs of {service}.",
        "Any {level} messages in the {service} logs?",
    ],
    say='{service} logged {count} {level} lines; the latest: "{latest}".',
    values={"service": _SERVICE, "lines": ints(10, 200)},
)
@tool(estimated_latency=0.4)
def tail_logs(
    service: str, level: Literal["error", "warning", "info"] = "error", lines: int = 50
) -> dict[str, Any]:
    """Read the latest log lines of a service.

    Args:
        service: The service's name.
        level: The lowest level to show.
        lines: How many lines.
    """
    f = Fake("tail_logs", service, level, lines)
    latest = f.pick(
        ("connection reset by peer", "timeout after 30s", "cache miss storm", "retrying job")
    )
    return {"service": service, "level": level, "count": min(lines, f.int(0, 80)), "latest": latest}


@DOMAIN.register(
    asks=["Scale {service} to {replicas} replicas.", "Run {replicas} instances of {service}."],
    say="{service} now runs {replicas} replicas (was {previous}).",
    values={"service": _SERVICE, "replicas": ints(1, 24)},
)
@tool(estimated_latency=1.0)
def scale_service(service: str, replicas: int) -> dict[str, Any]:
    """Change how many replicas of a service run.

    Args:
        service: The service's name.
        replicas: The new replica count.
    """
    return {"service": service, "replicas": replicas, "previous": Fake("scale", service).int(1, 12)}


@DOMAIN.register(
    asks=[
        'Open a {severity} incident for {service}: "{title}".',
        'File an incident "{title}" on {service}, severity {severity}.',
    ],
    say="Incident {incident_id} ({severity}) is open for {service}.",
    values={
        "service": _SERVICE,
        "title": pick("checkout errors", "slow logins", "stale search results", "queue backlog"),
    },
)
@tool(estimated_latency=0.5)
def open_incident(
    title: str, service: str, severity: Literal["sev1", "sev2", "sev3"] = "sev3"
) -> dict[str, Any]:
    """Open an incident ticket.

    Args:
        title: A short title.
        service: The affected service.
        severity: How severe it is.
    """
    return {
        "incident_id": Fake("open_incident", title, service).code("INC", 5),
        "service": service,
        "severity": severity,
    }


@DOMAIN.register(
    asks=[
        "When does the TLS certificate of {domain} expire?",
        "Check the SSL certificate of {domain}.",
    ],
    say="The certificate of {domain} expires in {expires_in_days} days (issuer {issuer}).",
    values={
        "domain": pick(
            "shop.example.com", "api.example.org", "status.example.net", "mail.example.io"
        )
    },
)
@tool(estimated_latency=0.6)
def check_certificate(domain: str) -> dict[str, Any]:
    """Check when a domain's TLS certificate expires.

    Args:
        domain: The domain name.
    """
    f = Fake("check_certificate", domain)
    if f.chance(0.3):
        return {"domain": domain, "error": "the host did not answer on port 443"}
    return {
        "domain": domain,
        "expires_in_days": f.int(1, 365),
        "issuer": f.pick(("ExampleCA", "OpenTrust")),
    }


@DOMAIN.register(
    asks=["Ping {host} {count} times.", "Is {host} reachable?", "What's the latency to {host}?"],
    say="{host} answered {received}/{count} pings, {avg_ms} ms on average.",
    values={"host": _HOST, "count": ints(2, 10)},
)
@tool(estimated_latency=0.7)
def ping_host(host: str, count: int = 4) -> dict[str, Any]:
    """Ping a host.

    Args:
        host: The host's name.
        count: How many pings.
    """
    f = Fake("ping_host", host, count)
    return {
        "host": host,
        "count": count,
        "received": count - f.pick((0, 0, 0, 1)),
        "avg_ms": f.num(0.3, 80),
    }
