"""Finance: stocks, currencies, loans, crypto and bank accounts."""

from __future__ import annotations

from typing import Any, Literal

from counterpoint.finetune.library._base import Domain, Fake
from counterpoint.finetune.library.values import floats, ints, listof, pick
from counterpoint.tools import tool

DOMAIN = Domain("finance")
_TICKERS = (
    "AAPL",
    "MSFT",
    "NVDA",
    "TSLA",
    "AMZN",
    "SAP",
    "ASML",
    "TM",
    "SONY",
    "NFLX",
    "INTC",
    "ORCL",
    "SHOP",
    "UBER",
    "ADBE",
    "IBM",
)
_COMPANIES = (
    "Northwind Traders",
    "Globex",
    "Initech",
    "Umbrella Foods",
    "Stark Metals",
    "Wayne Logistics",
    "Acme Robotics",
    "Hooli",
    "Vandelay Imports",
    "Soylent Labs",
)
_ACCOUNT = lambda rng: f"ACC-{rng.randint(10000, 99999)}"  # noqa: E731


@DOMAIN.register(
    asks=[
        "What's the current price of {symbol}?",
        "How is {symbol} trading today?",
        "Get me a stock quote for {symbol}.",
        "What is {symbol} stock worth right now?",
    ],
    then=["then get its current stock price", "and then check how its stock is trading"],
    say="{symbol} trades at {price} {currency} ({change_percent}% today).",
    links={"symbol": "lookup_ticker.symbol"},
    values={"symbol": pick(*_TICKERS)},
)
@tool(estimated_latency=0.2)
def get_stock_price(symbol: str) -> dict[str, Any]:
    """Get the latest price of a stock.

    Args:
        symbol: The ticker symbol, e.g. "AAPL".
    """
    f = Fake("get_stock_price", symbol)
    return {
        "symbol": symbol,
        "price": f.num(5, 900, 2),
        "currency": "USD",
        "change_percent": f.num(-6, 6, 2),
    }


@DOMAIN.register(
    asks=[
        "What's the ticker symbol of {company}?",
        "Look up the stock symbol for {company}.",
        "Under which ticker does {company} trade?",
    ],
    say="{company} trades as {symbol}.",
    values={"company": pick(*_COMPANIES)},
)
@tool(estimated_latency=0.15)
def lookup_ticker(company: str) -> dict[str, Any]:
    """Find the ticker symbol of a listed company.

    Args:
        company: The company's name.
    """
    f = Fake("lookup_ticker", company)
    letters = "".join(w[0] for w in company.upper().split())
    return {"company": company, "symbol": (letters + f.code(n=3))[:4]}


@DOMAIN.register(
    asks=[
        "Tell me about the company behind {symbol}.",
        "What sector is {symbol} in and how many employees does it have?",
        "Get the company profile for {symbol}.",
    ],
    then=["then get its company profile", "and then tell me what sector it is in"],
    say="{symbol} is in {sector} with about {employees} employees.",
    links={"symbol": "lookup_ticker.symbol"},
    values={"symbol": pick(*_TICKERS)},
)
@tool(estimated_latency=0.35)
def get_company_profile(symbol: str) -> dict[str, Any]:
    """Get the profile of a listed company.

    Args:
        symbol: The ticker symbol.
    """
    f = Fake("get_company_profile", symbol)
    sector = f.pick(("technology", "energy", "healthcare", "retail", "automotive", "media"))
    return {"symbol": symbol, "sector": sector, "employees": f.int(200, 250_000)}


@DOMAIN.register(
    asks=[
        "Convert {amount} {from_currency} to {to_currency}.",
        "How much is {amount} {from_currency} in {to_currency}?",
        "I have {amount} {from_currency}; what is that in {to_currency}?",
        "Change {amount} {from_currency} into {to_currency} at today's rate.",
    ],
    say="{amount} {from_currency} is {converted} {to_currency} (rate {rate}).",
)
@tool(estimated_latency=0.18)
def convert_currency(amount: float, from_currency: str, to_currency: str) -> dict[str, Any]:
    """Convert an amount of money from one currency to another.

    Args:
        amount: The amount to convert.
        from_currency: The currency code to convert from, e.g. "EUR".
        to_currency: The currency code to convert to.
    """
    rate = Fake("rate", from_currency, to_currency).num(0.05, 4, 4)
    return {
        "amount": amount,
        "from_currency": from_currency,
        "to_currency": to_currency,
        "rate": rate,
        "converted": round(amount * rate, 2),
    }


@DOMAIN.register(
    asks=[
        "What's the exchange rate from {from_currency} to {to_currency}?",
        "How many {to_currency} do I get for one {from_currency}?",
        "Give me the {from_currency}/{to_currency} rate.",
    ],
    say="One {from_currency} buys {rate} {to_currency}.",
)
@tool(estimated_latency=0.12)
def get_exchange_rate(from_currency: str, to_currency: str) -> dict[str, Any]:
    """Get the exchange rate between two currencies.

    Args:
        from_currency: The base currency code.
        to_currency: The quote currency code.
    """
    rate = Fake("rate", from_currency, to_currency).num(0.05, 4, 4)
    return {"from_currency": from_currency, "to_currency": to_currency, "rate": rate}


@DOMAIN.register(
    asks=[
        "What's the monthly payment on a loan of {principal} at {annual_rate}% over {years} years?",
        "I'm borrowing {principal} for {years} years at {annual_rate} percent. Monthly payment?",
        "Calculate the monthly repayment for {principal} at {annual_rate}% for {years} years.",
    ],
    say="A loan of {principal} at {annual_rate}% over {years} years costs {monthly_payment} a "
    "month, {total_interest} in interest overall.",
    values={"principal": ints(2000, 400000), "annual_rate": floats(1, 12, 2), "years": ints(2, 30)},
)
@tool(estimated_latency=0.03)
def calculate_loan_payment(principal: float, annual_rate: float, years: int) -> dict[str, Any]:
    """Compute the monthly payment of an amortised loan.

    Args:
        principal: The amount borrowed.
        annual_rate: The yearly interest rate in percent.
        years: The loan's term in years.
    """
    r, n = annual_rate / 1200, years * 12
    monthly = principal / n if r == 0 else principal * r / (1 - (1 + r) ** -n)
    return {
        "principal": principal,
        "annual_rate": annual_rate,
        "years": years,
        "monthly_payment": round(monthly, 2),
        "total_interest": round(monthly * n - principal, 2),
    }


@DOMAIN.register(
    asks=[
        "What's the price of {coin} in {currency}?",
        "How much is one {coin} worth right now?",
        "Check the {coin} price for me.",
    ],
    say="One {coin} is worth {price} {currency}.",
)
@tool(estimated_latency=0.25)
def get_crypto_price(
    coin: Literal["bitcoin", "ether", "solana", "cardano"], currency: str = "USD"
) -> dict[str, Any]:
    """Get the current price of a cryptocurrency.

    Args:
        coin: The coin.
        currency: The currency to price it in.
    """
    return {
        "coin": coin,
        "currency": currency,
        "price": Fake("get_crypto_price", coin, currency).num(0.3, 90000, 2),
    }


@DOMAIN.register(
    asks=[
        "What were the high and low of {symbol} over the last {days} days?",
        "Show me {symbol}'s price range for the past {days} days.",
        "How has {symbol} moved in the last {days} days?",
    ],
    say="Over {days} days {symbol} ranged from {low} to {high}, averaging {average}.",
    values={"symbol": pick(*_TICKERS), "days": ints(5, 90)},
)
@tool(estimated_latency=0.7)
def get_stock_history(symbol: str, days: int = 30) -> dict[str, Any]:
    """Get the price range of a stock over recent days.

    Args:
        symbol: The ticker symbol.
        days: How many days back.
    """
    f = Fake("get_stock_history", symbol, days)
    low = f.num(5, 600, 2)
    high = round(low * f.num(1.02, 1.4, 3), 2)
    return {
        "symbol": symbol,
        "days": days,
        "low": low,
        "high": high,
        "average": round((low + high) / 2, 2),
    }


@DOMAIN.register(
    asks=[
        "Which of {symbols} did best this month?",
        "Compare the performance of {symbols}.",
        "Rank {symbols} by this month's return.",
    ],
    say="Of {symbols}, {best} did best and {worst} did worst.",
    values={"symbols": listof(_TICKERS, 2, 4)},
)
@tool(estimated_latency=0.8)
def compare_stocks(symbols: list[str]) -> dict[str, Any]:
    """Compare the monthly performance of several stocks.

    Args:
        symbols: The ticker symbols to compare.
    """
    ranked = sorted(symbols, key=lambda s: Fake("perf", s).num(-20, 20))
    return {"symbols": symbols, "best": ranked[-1], "worst": ranked[0]}


@DOMAIN.register(
    asks=[
        "What's the balance of account {account_id}?",
        "How much money is in account {account_id}?",
        "Check my balance on {account_id}.",
    ],
    say="Account {account_id} holds {balance} {currency}.",
    values={"account_id": _ACCOUNT},
)
@tool(estimated_latency=0.3)
def get_account_balance(account_id: str) -> dict[str, Any]:
    """Get the balance of a bank account.

    Args:
        account_id: The account's id, e.g. "ACC-12345".
    """
    f = Fake("get_account_balance", account_id)
    if f.chance(0.3):
        return {"account_id": account_id, "error": "no account with this id"}
    return {"account_id": account_id, "balance": f.num(0, 25000, 2), "currency": "EUR"}


@DOMAIN.register(
    asks=[
        "Transfer {amount} from {from_account} to {to_account}.",
        "Send {amount} from account {from_account} to account {to_account}.",
        ('Move {amount} from {from_account} to {to_account} with the note "{note}".', {}),
    ],
    say="Transfer {transfer_id} of {amount} from {from_account} to {to_account} is {status}.",
    values={
        "from_account": _ACCOUNT,
        "to_account": _ACCOUNT,
        "note": pick("rent", "dinner", "gift", "invoice 42", "school trip"),
    },
)
@tool(estimated_latency=0.9)
def transfer_funds(
    from_account: str, to_account: str, amount: float, note: str | None = None
) -> dict[str, Any]:
    """Transfer money between two bank accounts.

    Args:
        from_account: The account to debit.
        to_account: The account to credit.
        amount: The amount in the account's currency.
        note: An optional note for the recipient.
    """
    f = Fake("transfer_funds", from_account, to_account, amount, note)
    return {
        "transfer_id": f.code("TR-"),
        "amount": amount,
        "from_account": from_account,
        "to_account": to_account,
        "status": f.pick(("completed", "pending")),
    }
